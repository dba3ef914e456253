//! The command line as a user meets it: --version, check-config's exit
//! codes and messages, and start-up failure on a bad configuration.

use std::process::Command;

fn pipewarden(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pipewarden")).args(args).env_remove("KAFKA_BOOTSTRAP").output().unwrap()
}

#[test]
fn version_is_printed() {
    let out = pipewarden(&["--version"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("pipewarden {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn the_shipped_config_passes_check_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let out = pipewarden(&["check-config", "--config", path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_config_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[kafka]\ngroup_idd = \"x\"\ncommit_interval_ms = 0\n[topics]\ninclude = [\"(\"]\n[http]\nlisten = \"nowhere\"\n[kafka.properties]\n\"sasl.password\" = \"${PW_TEST_UNSET_VARIABLE}\"\n",
    )
    .unwrap();
    let out = pipewarden(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "kafka.group_idd: unknown key",
        "kafka.commit_interval_ms: must be greater than zero",
        "topics.include[0]: invalid regular expression",
        "http.listen:",
        "kafka.properties.\"sasl.password\": environment variable PW_TEST_UNSET_VARIABLE is not set",
        "5 configuration problem(s)",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn run_refuses_to_start_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[log]\nformat = \"xml\"\n").unwrap();
    let out = pipewarden(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.format"));
    let out = pipewarden(&["check-config", "--config", "/nonexistent/pipewarden.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
