//! The fuzz corpora as regression tests on stable Rust: every file of every
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` directory goes
//! through the same invariant checks the libFuzzer targets run
//! (`fuzz/src/lib.rs`, included here by path), so each input that once
//! found a bug (kept in `regressions/`) stays fixed.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// One target's invariant checks, given one input.
type Check = fn(&[u8]);

/// Each fuzz target's corpus directory and its check.
const TARGETS: [(&str, Check); 9] = [
    ("wire", harness::wire),
    ("envelope", harness::envelope),
    ("avro", harness::avro),
    ("traceparent", harness::traceparent),
    ("config", harness::config),
    ("json_scan", harness::json_scan),
    ("tape", harness::tape),
    // The JSON documents of these two go through the tape check too.
    ("json_scan", harness::tape),
    ("envelope", harness::tape),
];

#[test]
fn every_corpus_file_passes_its_target_checks() {
    // Unoptimised, apache-avro's decoder takes ~50 KiB of stack per nesting
    // level (release: a few KiB), and the avro corpus holds bodies up to the
    // 64-level limit: more than a test thread's 2 MiB.
    std::thread::Builder::new().stack_size(256 << 20).spawn(replay_every_corpus_file).unwrap().join().unwrap();
}

fn replay_every_corpus_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        let mut files: Vec<_> = std::fs::read_dir(root.join("corpus").join(target))
            .unwrap_or_else(|e| panic!("corpus of {target}: {e}"))
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(files.len() >= 5, "corpus of {target} has only {} files", files.len());
        if let Ok(regressions) = std::fs::read_dir(root.join("regressions").join(target)) {
            files.extend(regressions.map(|entry| entry.unwrap().path()));
        }
        files.sort();
        for file in files {
            // A fuzzer running meanwhile replaces the inputs it shortens.
            let Ok(data) = std::fs::read(&file) else { continue };
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failures.push(file.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "corpus files failing their checks: {failures:?}");
}
