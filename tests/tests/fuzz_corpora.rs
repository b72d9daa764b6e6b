//! Replays every input kept in `tests/fuzz/corpus/<target>/` through the
//! body of that fuzz target, on stable Rust and without cargo-fuzz: the
//! crashes the fuzzers found stay fixed, and the bodies keep accepting
//! every input the fuzzers ever kept. `docs/reliability.md` ("Fuzzing")
//! says how the corpora were grown and how to run the fuzzers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The body of a fuzz target.
type Body = fn(&[u8]);

/// Each target of `tests/fuzz/fuzz_targets/` and its body.
const TARGETS: &[(&str, Body)] = &[
    (
        "request_frames",
        kraftwerk_protocol::fuzzing::request_frames,
    ),
    ("record_batches", kraftwerk_storage::fuzzing::record_batches),
    ("log_recovery", kraftwerk_storage::fuzzing::log_recovery),
    (
        "controller_snapshot",
        kraftwerk_controller::fuzzing::snapshot,
    ),
];

/// A kept input that takes this long (in a debug build) is a hang.
const INPUT_TIME_MAX: Duration = Duration::from_secs(10);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn body(target: &str) -> Body {
    TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, body)| *body)
        .unwrap_or_else(|| panic!("no body for fuzz target {target}"))
}

fn replay(target: &str) {
    let body = body(target);
    let dir = fuzz_dir().join("corpus").join(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} is empty", dir.display());
    let mut failures = Vec::new();
    for path in &inputs {
        let data = std::fs::read(path).expect("read a corpus input");
        let started = Instant::now();
        if let Err(panic) = std::panic::catch_unwind(|| body(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            failures.push(format!("{}: {message}", path.display()));
        }
        let took = started.elapsed();
        if took > INPUT_TIME_MAX {
            failures.push(format!("{}: took {took:?}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} inputs of {target} failed:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}

#[test]
fn every_fuzz_target_is_replayed() {
    let mut targets: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("tests/fuzz/fuzz_targets")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_string)
        })
        .collect();
    targets.sort();
    let mut replayed: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    replayed.sort();
    assert_eq!(targets, replayed);
}

#[test]
fn request_frames_corpus() {
    replay("request_frames");
}

#[test]
fn record_batches_corpus() {
    replay("record_batches");
}

#[test]
fn log_recovery_corpus() {
    replay("log_recovery");
}

#[test]
fn controller_snapshot_corpus() {
    replay("controller_snapshot");
}

/// Writes the seed inputs (valid requests, batches, partition directories
/// and snapshots built by the code itself) into the corpora, as
/// `seed-<name>`. Run by hand when the formats change:
/// `cargo test -p kraftwerk-tests --test fuzz_corpora -- --ignored`.
#[test]
#[ignore = "writes into tests/fuzz/corpus"]
fn write_seed_inputs() {
    let seeds = [
        (
            "request_frames",
            kraftwerk_protocol::fuzzing::request_seeds(),
        ),
        (
            "record_batches",
            kraftwerk_storage::fuzzing::record_batch_seeds(),
        ),
        (
            "log_recovery",
            kraftwerk_storage::fuzzing::log_recovery_seeds(),
        ),
        (
            "controller_snapshot",
            kraftwerk_controller::fuzzing::snapshot_seeds(),
        ),
    ];
    for (target, inputs) in seeds {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("create a corpus directory");
        for (name, input) in inputs {
            body(target)(&input);
            std::fs::write(dir.join(format!("seed-{name}")), input).expect("write a seed");
        }
    }
}
