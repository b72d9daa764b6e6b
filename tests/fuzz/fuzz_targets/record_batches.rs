//! Record-batch validation: length, magic, CRC32C, control records, and the
//! records inside (decompressed), as compaction and the keyed-record check
//! read them.
//! The body is `kraftwerk_storage::fuzzing::record_batches`, which
//! `tests/tests/fuzz_corpora.rs` also replays on stable Rust.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kraftwerk_storage::fuzzing::record_batches(data));
