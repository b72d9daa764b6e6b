//! Layer 2: the controller quorum, KRaft-style.
//!
//! A Raft group of controller nodes (openraft; log and vote in sled; Raft
//! RPCs over gRPC) replicates a log of [`commands::MetadataCommand`]s. Every
//! node applies the committed commands, in order, to a
//! [`kraftwerk_metadata::MetadataImage`] with [`commands::apply`], a pure
//! function, so all nodes hold the same image at the same log index.
//! This is the only crate that knows openraft.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub use kraftwerk_metadata::commands;
#[doc(hidden)]
pub mod fuzzing;
pub mod liveness;
pub mod node;
pub mod process;
pub mod raft;
pub mod service;
pub mod single_node;

pub use node::{ControllerConfig, ControllerError, ControllerNode, QuorumStatus};
pub use process::ControllerProcess;
