//! A Kafka broker of the test's own, for tests that stop and restart it:
//! `scripts/kafka.sh` with its own `KAFKA_INSTANCE` (run folder
//! `.run/kafka-<instance>`) and free ports, so the shared broker other tests
//! use is never touched. Dropping it stops the broker through the script and
//! deletes its run folder.

use std::path::PathBuf;
use std::process::Command;

/// One broker started by `scripts/kafka.sh` under its own instance name.
pub struct OwnBroker {
    instance: String,
    port: u16,
    controller_port: u16,
}

impl OwnBroker {
    /// Starts a fresh broker on two free ports (formatting its storage takes a few seconds).
    pub fn start(prefix: &str) -> OwnBroker {
        let instance = super::unique(prefix);
        // Below the ephemeral range: `restart` binds the same ports again.
        let broker =
            OwnBroker { instance, port: super::restartable_port(), controller_port: super::restartable_port() };
        broker.script("start");
        broker
    }

    /// `host:port` of the broker's client listener.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM through the script, which waits for the exit).
    pub fn stop(&self) {
        self.script("stop");
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&self) {
        self.script("start");
    }

    fn run_dir(&self) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(".run/kafka-{}", self.instance))
    }

    fn script(&self, command: &str) {
        let status = self.command(command).status().expect("run scripts/kafka.sh");
        assert!(status.success(), "scripts/kafka.sh {command} ({}) failed: {status}", self.instance);
    }

    fn command(&self, command: &str) -> Command {
        let mut script = Command::new("bash");
        script
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh"))
            .arg(command)
            // Without this the script would take the shared broker for an
            // external cluster and do nothing.
            .env_remove("KAFKA_BOOTSTRAP")
            .env("KAFKA_INSTANCE", &self.instance)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_CONTROLLER_PORT", self.controller_port.to_string())
            // A small heap: this broker holds a few thousand records.
            .env("KAFKA_HEAP_OPTS", "-Xms128m -Xmx512m")
            // A loaded 2-core machine needs up to a minute for a restart.
            .env("KAFKA_START_TIMEOUT", "180");
        script
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Before stopping it: who listens on and connects to its ports.
            let sockets = Command::new("ss").arg("-tanp").output().map(|o| o.stdout).unwrap_or_default();
            let ports = [format!(":{} ", self.port), format!(":{} ", self.controller_port)];
            let sockets: Vec<&str> = std::str::from_utf8(&sockets)
                .unwrap_or_default()
                .lines()
                .filter(|line| line.starts_with("State") || ports.iter().any(|p| line.contains(p.as_str())))
                .collect();
            eprintln!("--- sockets on ports {} and {}:\n{}", self.port, self.controller_port, sockets.join("\n"));
        }
        let _ = self.command("stop").status();
        if std::thread::panicking() {
            // The test failed: print the ends of the broker's own logs and
            // keep its directory, so a failure in CI says what the broker did.
            for name in ["kafka.out", "server.log"] {
                let path = self.run_dir().join(name);
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!("--- last {} lines of {}:\n{}", tail.len(), path.display(), tail.join("\n"));
            }
            return;
        }
        let _ = std::fs::remove_dir_all(self.run_dir());
    }
}
