//! Deterministic simulations of the controller quorum ([`quorum`]) and of
//! partition replication ([`replication`]), run by this crate's tests.
//!
//! Outside the layers, like `tests`: a workspace member that may use every
//! crate and that no crate depends on. Each simulation is a pure function
//! of a seed: one thread, simulated time, every random choice drawn from
//! the seed ([`harness::Rng`]), so a failing seed replays identically
//! (`KRAFTWERK_SIM_SEED=<seed>`). See docs/reliability.md, "Deterministic
//! simulation".

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod harness;
pub mod quorum;
pub mod replication;
