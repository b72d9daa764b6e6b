//! Segment and index recovery: the input becomes a partition directory that
//! `Log::open` recovers.
//! The body is `kraftwerk_storage::fuzzing::log_recovery`, which
//! `tests/tests/fuzz_corpora.rs` also replays on stable Rust.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kraftwerk_storage::fuzzing::log_recovery(data));
