//! Layer 0: the gRPC services and messages generated from `proto/`, and
//! how every Kraftwerk gRPC server accepts connections ([`incoming`]).
//!
//! Generated code is never edited by hand; change the `.proto` files.

#![allow(clippy::all, clippy::unwrap_used)]

pub mod raft {
    tonic::include_proto!("kraftwerk.raft");
}

pub mod controller {
    tonic::include_proto!("kraftwerk.controller");
}

pub mod replication {
    tonic::include_proto!("kraftwerk.replication");
}

/// The connections a gRPC server accepts on `listener`, with Nagle's
/// algorithm off. A follower fetch answer or a Raft reply is a few small
/// HTTP/2 frames written one after the other; with Nagle on, the second
/// waits for the peer's delayed acknowledgement of the first (tens of
/// milliseconds on Linux), and every acks=all produce waits with it.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
