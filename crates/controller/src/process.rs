//! A controller as a process role: the Raft node, the broker-liveness task
//! and the gRPC server (Raft and broker RPCs) on the controller listener,
//! started together and stopped together like a broker
//! (`start`, then `wait` once the shutdown token fired).

use std::sync::Arc;

use kraftwerk_rpc::controller::controller_server::ControllerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::node::{ControllerConfig, ControllerError, ControllerNode};
use crate::service::{ControllerGrpc, ControllerService, LivenessConfig};

/// HTTP/2 ping interval on accepted connections, and how long a ping may
/// go unanswered before the connection is closed.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct ControllerProcess {
    node: Arc<ControllerNode>,
    tasks: TaskTracker,
}

impl ControllerProcess {
    /// Starts the Raft node and serves it, and the broker-facing service,
    /// on `listener` until `shutdown` fires.
    pub async fn start(
        config: ControllerConfig,
        liveness: LivenessConfig,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<ControllerProcess, ControllerError> {
        let tls = config.tls.clone();
        let node = Arc::new(ControllerNode::start(config).await?);
        let tasks = TaskTracker::new();
        let service =
            ControllerService::new(node.clone(), liveness, shutdown.clone(), tasks.clone());
        tasks.spawn(service.clone().run_liveness(shutdown.clone()));
        // Pings find connections whose peer vanished without a reset (a
        // network cut), so the broker sessions on them end.
        let router = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .add_service(node.raft_service())
            .add_service(ControllerServer::new(ControllerGrpc(service)));
        let incoming = kraftwerk_rpc::incoming(listener, tls);
        tasks.spawn(async move {
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
                .await
            {
                tracing::error!(error = %e, "controller gRPC server failed");
            }
        });
        tasks.close();
        Ok(ControllerProcess { node, tasks })
    }

    pub fn node(&self) -> &Arc<ControllerNode> {
        &self.node
    }

    /// Waits for the server and the liveness task to end (after the
    /// shutdown token fired), then stops Raft.
    pub async fn wait(self) {
        self.tasks.wait().await;
        self.node.shutdown().await;
    }
}
