//! The controller's decoders of stored and received Raft snapshots and of
//! Raft log entries.
//! The body is `kraftwerk_controller::fuzzing::snapshot`, which
//! `tests/tests/fuzz_corpora.rs` also replays on stable Rust.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kraftwerk_controller::fuzzing::snapshot(data));
