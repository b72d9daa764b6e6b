//! A small controller cluster in one test process: each node has its own
//! data directory and its own gRPC server on a free loopback port, and can be
//! stopped and started again on the same directory and port.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kraftwerk_controller::commands::{CommandResult, MetadataCommand};
use kraftwerk_controller::node::serve_raft_only;
use kraftwerk_controller::{ControllerConfig, ControllerError, ControllerNode};
use kraftwerk_metadata::MetadataImage;
use kraftwerk_types::TopicId;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for anything the cluster should do by itself.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct RunningNode {
    pub node: Arc<ControllerNode>,
    stop_server: CancellationToken,
    server: JoinHandle<()>,
}

pub struct Cluster {
    pub dirs: BTreeMap<u64, tempfile::TempDir>,
    pub addrs: BTreeMap<u64, String>,
    pub nodes: BTreeMap<u64, Option<RunningNode>>,
    pub tune: fn(&mut ControllerConfig),
}

/// Test timings: the default election timeouts with a faster heartbeat.
pub fn fast(config: &mut ControllerConfig) {
    config.election_timeout_min_ms = 300;
    config.election_timeout_max_ms = 600;
    config.heartbeat_interval_ms = 100;
}

impl Cluster {
    /// Starts `n` nodes with ids 1..=n.
    pub async fn start(n: u64, tune: fn(&mut ControllerConfig)) -> Cluster {
        let mut listeners = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        let mut dirs = BTreeMap::new();
        for id in 1..=n {
            let l = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a free port");
            addrs.insert(id, l.local_addr().expect("local addr").to_string());
            listeners.insert(id, l);
            dirs.insert(id, tempfile::tempdir().expect("temp dir"));
        }
        let mut cluster = Cluster {
            dirs,
            addrs,
            nodes: BTreeMap::new(),
            tune,
        };
        for (id, l) in listeners {
            cluster.start_node_on(id, l).await;
        }
        cluster
    }

    pub fn config(&self, id: u64) -> ControllerConfig {
        let mut c =
            ControllerConfig::new(id, self.addrs.clone(), self.dirs[&id].path().to_path_buf());
        (self.tune)(&mut c);
        c
    }

    async fn start_node_on(&mut self, id: u64, listener: TcpListener) {
        let node = Arc::new(
            ControllerNode::start(self.config(id))
                .await
                .expect("start controller node"),
        );
        let stop_server = CancellationToken::new();
        let stop = stop_server.clone();
        let service = node.raft_service();
        let server = tokio::spawn(async move {
            if let Err(e) =
                serve_raft_only(service, listener, async move { stop.cancelled().await }).await
            {
                eprintln!("raft server of node {id} failed: {e}");
            }
        });
        self.nodes.insert(
            id,
            Some(RunningNode {
                node,
                stop_server,
                server,
            }),
        );
    }

    /// Starts a stopped node again on its directory and port.
    pub async fn restart_node(&mut self, id: u64) {
        assert!(
            self.nodes.get(&id).is_none_or(|n| n.is_none()),
            "node {id} is running"
        );
        let deadline = Instant::now() + WAIT;
        let listener = loop {
            match TcpListener::bind(&self.addrs[&id]).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {}: {e}", self.addrs[&id]);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addrs[&id]),
            }
        };
        self.start_node_on(id, listener).await;
    }

    pub async fn stop_node(&mut self, id: u64) {
        let running = self
            .nodes
            .get_mut(&id)
            .and_then(Option::take)
            .expect("node is running");
        running.node.shutdown().await;
        running.stop_server.cancel();
        let mut server = running.server;
        if tokio::time::timeout(Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            server.abort();
            let _ = server.await;
        }
        // The node (and with it the sled database) is dropped here.
        drop(running.node);
    }

    pub async fn stop_all(&mut self) {
        let ids: Vec<u64> = self.running().map(|(id, _)| id).collect();
        for id in ids {
            self.stop_node(id).await;
        }
    }

    pub fn node(&self, id: u64) -> &ControllerNode {
        self.nodes[&id]
            .as_ref()
            .map(|r| r.node.as_ref())
            .expect("node is running")
    }

    pub fn running(&self) -> impl Iterator<Item = (u64, &ControllerNode)> {
        self.nodes
            .iter()
            .filter_map(|(id, n)| n.as_ref().map(|r| (*id, r.node.as_ref())))
    }

    /// Waits until all running nodes agree on one leader among them.
    pub async fn wait_for_leader(&self) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let leaders: Vec<Option<u64>> = self.running().map(|(_, n)| n.leader_id()).collect();
            if let Some(Some(l)) = leaders.first() {
                if leaders.iter().all(|x| *x == Some(*l))
                    && self.nodes.get(l).is_some_and(|n| n.is_some())
                    && self.node(*l).is_leader()
                {
                    return *l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {WAIT:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes through whichever node leads, following NotLeader hints.
    pub async fn write(&self, command: MetadataCommand) -> CommandResult {
        let deadline = Instant::now() + WAIT;
        loop {
            let leader = self.wait_for_leader().await;
            match self.node(leader).write(command.clone()).await {
                Ok(result) => return result,
                Err(ControllerError::NotLeader { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("write {command:?} failed: {e}"),
            }
        }
    }

    /// Waits until node `id`'s committed image satisfies `check`.
    pub async fn wait_for_image(
        &self,
        id: u64,
        check: impl Fn(&MetadataImage) -> bool,
    ) -> Arc<MetadataImage> {
        let mut rx = self.node(id).image();
        let waited = tokio::time::timeout(WAIT, rx.wait_for(|image| check(image)))
            .await
            .map(|r| r.map(|i| i.clone()));
        match waited {
            Ok(Ok(image)) => image,
            Ok(Err(_)) => panic!("node {id}'s image channel closed"),
            Err(_) => panic!(
                "node {id}'s image did not reach the expected state within {WAIT:?}: {:?}",
                rx.borrow()
            ),
        }
    }
}

pub fn create_topic(name: &str) -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: name.to_string(),
        topic_id: TopicId::random(),
        assignments: vec![vec![1, 2, 3], vec![2, 3, 1]],
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
    }
}

/// A single-voter controller process (Raft, liveness and the broker-facing
/// gRPC service) on a free loopback port: the process, its address, the
/// token that stops it and its data directory.
pub async fn single_voter_process(
    liveness: kraftwerk_controller::service::LivenessConfig,
) -> (
    kraftwerk_controller::ControllerProcess,
    String,
    CancellationToken,
    tempfile::TempDir,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = ControllerConfig::new(1, BTreeMap::from([(1, addr.clone())]), dir.path().into());
    let shutdown = CancellationToken::new();
    let process = kraftwerk_controller::ControllerProcess::start(
        config,
        liveness,
        listener,
        shutdown.clone(),
    )
    .await
    .unwrap();
    (process, addr, shutdown, dir)
}
