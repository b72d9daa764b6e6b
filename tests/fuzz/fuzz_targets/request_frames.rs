//! Request framing and decoding, as a broker connection does it.
//! The body is `kraftwerk_protocol::fuzzing::request_frames`, which
//! `tests/tests/fuzz_corpora.rs` also replays on stable Rust.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kraftwerk_protocol::fuzzing::request_frames(data));
