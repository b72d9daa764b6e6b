//! Layer 0: the gRPC services and messages generated from `proto/`, and
//! how every Kraftwerk gRPC server accepts and client dials connections,
//! in plaintext or TLS ([`transport`]).
//!
//! Generated code is never edited by hand; change the `.proto` files.
//! [`wire`] converts kraftwerk-metadata's values to and from their
//! messages.

#[allow(clippy::all, clippy::unwrap_used)]
pub mod raft {
    tonic::include_proto!("kraftwerk.raft");
}

#[allow(clippy::all, clippy::unwrap_used)]
pub mod metadata {
    tonic::include_proto!("kraftwerk.metadata");
}

#[allow(clippy::all, clippy::unwrap_used)]
pub mod controller {
    tonic::include_proto!("kraftwerk.controller");
}

#[allow(clippy::all, clippy::unwrap_used)]
pub mod replication {
    tonic::include_proto!("kraftwerk.replication");
}

pub mod transport;
pub mod wire;

pub use transport::{connect_lazy, endpoint, incoming, NodeTls};
