//! The server side of Raft RPCs: decodes openraft's message from the
//! payload, hands it to the local Raft, and encodes the whole result, an
//! openraft error included, so the caller sees the error its peer's Raft
//! returned. gRPC errors are kept for requests that cannot be decoded or
//! come in another message format (a controller of another version).

use std::sync::Arc;
use std::time::Instant;

use kraftwerk_rpc::raft::raft_server::{Raft as RaftRpc, RaftServer};
use kraftwerk_rpc::raft::RaftPayload;
use openraft::raft::AppendEntriesResponse;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::format::FORMAT_VERSION;
use super::network::{RAFT_FORMAT_HEADER, RAFT_MESSAGE_BYTES_MAX};
use super::MetadataRaft;

/// When this node last accepted entries or a heartbeat from a leader.
pub type LeaderContact = Arc<Mutex<Option<Instant>>>;

/// Serves Raft RPCs of peers to the local Raft.
#[derive(Clone)]
pub struct RaftService {
    raft: MetadataRaft,
    leader_contact: LeaderContact,
}

impl RaftService {
    /// Serves `raft`, noting in `leader_contact` each append-entries call
    /// that a leader of the current or a newer term made.
    pub fn new(raft: MetadataRaft, leader_contact: LeaderContact) -> Self {
        RaftService {
            raft,
            leader_contact,
        }
    }

    /// The tonic service, with message limits that fit snapshot chunks.
    pub fn into_server(self) -> RaftServer<RaftService> {
        RaftServer::new(self)
            .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
    }
}

fn decode<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    let format = request
        .metadata()
        .get(RAFT_FORMAT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if format != Some(FORMAT_VERSION) {
        // Controllers before format 2 send no header; their leader ids are
        // (term, node) and would be misread.
        let found = format.map_or_else(|| "1 (no header)".to_string(), |f| f.to_string());
        return Err(Status::failed_precondition(format!(
            "Raft messages in format {found}, this controller speaks format {FORMAT_VERSION}: \
             every controller of the quorum must run the same Kraftwerk version"
        )));
    }
    serde_json::from_slice(&request.into_inner().payload)
        .map_err(|e| Status::invalid_argument(format!("cannot decode the Raft request: {e}")))
}

fn encode<T: Serialize>(result: &T) -> Result<Response<RaftPayload>, Status> {
    let payload = serde_json::to_vec(result)
        .map_err(|e| Status::internal(format!("cannot encode the Raft reply: {e}")))?;
    Ok(Response::new(RaftPayload { payload }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request)?;
        let result = self.raft.append_entries(rpc).await;
        if matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            *self.leader_contact.lock() = Some(Instant::now());
        }
        encode(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request)?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request)?;
        encode(&self.raft.install_snapshot(rpc).await)
    }
}
