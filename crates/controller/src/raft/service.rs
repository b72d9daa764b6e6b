//! The server side of Raft RPCs: decodes openraft's message from the
//! payload, hands it to the local Raft, and encodes the whole result, an
//! openraft error included, so the caller sees the error its peer's Raft
//! returned. gRPC errors are kept for requests that cannot be decoded.

use kraftwerk_rpc::raft::raft_server::{Raft as RaftRpc, RaftServer};
use kraftwerk_rpc::raft::RaftPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::network::RAFT_MESSAGE_BYTES_MAX;
use super::MetadataRaft;

/// Serves Raft RPCs of peers to the local Raft.
#[derive(Clone)]
pub struct RaftService {
    raft: MetadataRaft,
}

impl RaftService {
    pub fn new(raft: MetadataRaft) -> Self {
        RaftService { raft }
    }

    /// The tonic service, with message limits that fit snapshot chunks.
    pub fn into_server(self) -> RaftServer<RaftService> {
        RaftServer::new(self)
            .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
    }
}

fn decode<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
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
        encode(&self.raft.append_entries(rpc).await)
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
