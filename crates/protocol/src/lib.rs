//! Layer 0: the thin layer over the `kafka-protocol` crate.
//!
//! * [`frame`]: length-prefixed framing, with the length checked against a
//!   limit before anything is allocated.
//! * [`batch`]: the 61-byte header of a v2 record batch, read and CRC32C
//!   checked without decoding a single record.
//! * [`versions`]: the API version ranges Kraftwerk serves, one table that
//!   ApiVersions, the request router and `docs/compatibility.md` all use.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod batch;
pub mod frame;
pub mod versions;

#[doc(hidden)]
pub mod fuzzing;

pub use kafka_protocol;
