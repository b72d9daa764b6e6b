//! The client side of Raft RPCs: openraft's messages as serde_json inside
//! `RaftPayload`, over one lazily connected gRPC channel per peer, each
//! request marked with the message format ([`RAFT_FORMAT_HEADER`]).
//!
//! A transport failure (peer down, connection refused) becomes
//! `Unreachable`, which makes openraft back off before retrying that peer; a
//! missed deadline or a reply that cannot be decoded becomes `NetworkError`;
//! an error that the peer's Raft returned comes back as `RemoteError`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kraftwerk_rpc::raft::raft_client::RaftClient;
use kraftwerk_rpc::raft::RaftPayload;
use kraftwerk_rpc::NodeTls;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use super::{NodeId, TypeConfig};

/// Bounds on one peer connection. The per-request deadline comes from
/// openraft (`RPCOption::hard_ttl`: the heartbeat interval for entries, the
/// install-snapshot timeout for snapshot chunks, the election timeout for votes).
#[derive(Debug, Clone, Copy)]
pub struct NetworkTimeouts {
    pub connect_timeout_ms: u64,
    /// HTTP/2 keep-alive pings find a silently dead peer.
    pub keep_alive_interval_ms: u64,
}

impl Default for NetworkTimeouts {
    fn default() -> Self {
        NetworkTimeouts {
            connect_timeout_ms: 1_000,
            keep_alive_interval_ms: 5_000,
        }
    }
}

/// The largest reply a peer may send; snapshot chunks are far smaller.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The request header that carries the format of the Raft messages: the
/// store format ([`super::format::FORMAT_VERSION`]), since both follow
/// openraft's leader ids. A controller refuses messages in another format
/// (a peer of another version) with a status that says so, rather than
/// misreading them.
pub const RAFT_FORMAT_HEADER: &str = "kraftwerk-raft-format";

/// Creates one [`PeerNetwork`] per target; channels are kept per peer
/// address and reused when openraft recreates a client.
#[derive(Clone, Default)]
pub struct NetworkFactory {
    channels: Arc<Mutex<HashMap<(NodeId, String), Channel>>>,
    timeouts: NetworkTimeouts,
    tls: Option<Arc<dyn NodeTls>>,
}

impl NetworkFactory {
    pub fn new(timeouts: NetworkTimeouts, tls: Option<Arc<dyn NodeTls>>) -> Self {
        NetworkFactory {
            channels: Arc::default(),
            timeouts,
            tls,
        }
    }

    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, String> {
        let key = (target, addr.to_string());
        if let Some(c) = self.channels.lock().get(&key) {
            return Ok(c.clone());
        }
        let endpoint = kraftwerk_rpc::endpoint(addr)
            .map_err(|e| format!("bad address '{addr}' of controller {target}: {e}"))?
            .connect_timeout(Duration::from_millis(self.timeouts.connect_timeout_ms))
            .http2_keep_alive_interval(Duration::from_millis(self.timeouts.keep_alive_interval_ms))
            .keep_alive_while_idle(true);
        let channel = kraftwerk_rpc::connect_lazy(endpoint, self.tls.as_ref());
        self.channels.lock().insert(key, channel.clone());
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerNetwork {
        let client = self.channel(target, &node.addr).map(|c| {
            RaftClient::new(c)
                .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        });
        PeerNetwork { target, client }
    }
}

/// Raft RPCs to one peer.
pub struct PeerNetwork {
    target: NodeId,
    /// `Err` when the peer's address is unusable; every call then fails as unreachable.
    client: Result<RaftClient<Channel>, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

/// What went wrong before the peer's Raft answered.
enum CallError {
    Unreachable(TransportError),
    Network(TransportError),
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, BasicNode, E> {
        match self {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerNetwork {
    /// Sends `request`, returns the peer's `Result<Resp, Err>` as it sent it.
    async fn call<Req, Resp, Err>(
        &mut self,
        rpc: Rpc,
        request: &Req,
        timeout: Duration,
    ) -> Result<Result<Resp, Err>, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        Err: DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(CallError::Unreachable(TransportError(e.clone()))),
        };
        let payload = serde_json::to_vec(request).map_err(|e| {
            CallError::Network(TransportError(format!("encoding a Raft request: {e}")))
        })?;
        let mut request = tonic::Request::new(RaftPayload { payload });
        request.set_timeout(timeout);
        request.metadata_mut().insert(
            RAFT_FORMAT_HEADER,
            tonic::metadata::MetadataValue::from(super::format::FORMAT_VERSION),
        );
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| {
            let e = TransportError(format!("controller {}: {status}", self.target));
            match status.code() {
                tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown => {
                    CallError::Unreachable(e)
                }
                _ => CallError::Network(e),
            }
        })?;
        serde_json::from_slice(&reply.into_inner().payload).map_err(|e| {
            CallError::Network(TransportError(format!(
                "decoding the reply of controller {}: {e}",
                self.target
            )))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let target = self.target;
        match self.call(Rpc::AppendEntries, &rpc, option.hard_ttl()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(target, e))),
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let target = self.target;
        match self
            .call(Rpc::InstallSnapshot, &rpc, option.hard_ttl())
            .await
        {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(target, e))),
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let target = self.target;
        match self.call(Rpc::Vote, &rpc, option.hard_ttl()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(target, e))),
            Err(e) => Err(e.into_rpc()),
        }
    }
}
