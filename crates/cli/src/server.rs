//! `kraftwerk server`: run one node.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::sync::Arc;

use kraftwerk_broker::Broker;
use kraftwerk_controller::node::{ControllerConfig, ControllerNode};
use kraftwerk_controller::service::{ControllerGrpc, ControllerService, LivenessConfig};
use kraftwerk_rpc::controller::controller_server::ControllerServer;
use kraftwerk_types::BrokerConfig;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Kafka-style properties file (`key=value` lines, e.g. server.properties).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where partition logs live (sets `log.dirs`). Default: ./data
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listeners, as in Kafka's `listeners` (default PLAINTEXT://127.0.0.1:9092).
    #[arg(long, value_name = "NAME://HOST:PORT,...")]
    pub listeners: Option<String>,
    /// Any property, overriding the file: `--override num.partitions=3`. Repeatable.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut raw: BTreeMap<String, String> = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            BrokerConfig::parse_properties(&text)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        // Like Kafka's single-node quickstart properties: one broker cannot
        // hold three replicas of __consumer_offsets.
        None => BTreeMap::from([(
            "offsets.topic.replication.factor".to_string(),
            "1".to_string(),
        )]),
    };
    if let Some(dir) = &args.data_dir {
        raw.insert("log.dirs".into(), dir.display().to_string());
    }
    if let Some(l) = &args.listeners {
        raw.insert("listeners".into(), l.clone());
    }
    for o in &args.overrides {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("--override '{o}' is not KEY=VALUE"))?;
        raw.insert(k.trim().to_string(), v.trim().to_string());
    }
    let roles = raw
        .get("process.roles")
        .cloned()
        .unwrap_or_else(|| "broker,controller".into());
    let is_broker = roles.split(',').any(|r| r.trim() == "broker");
    let is_controller = roles.split(',').any(|r| r.trim() == "controller");
    if !is_broker && !is_controller {
        anyhow::bail!("process.roles='{roles}' names neither broker nor controller");
    }
    let voters = raw.get("controller.quorum.voters").cloned();
    if voters.is_none() && !is_broker {
        anyhow::bail!("process.roles=controller needs controller.quorum.voters");
    }
    let config = BrokerConfig::from_map(raw).context("invalid configuration")?;
    let shutdown = CancellationToken::new();

    let controller = match (&voters, is_controller) {
        (Some(v), true) => Some(start_controller(&config, v, shutdown.clone()).await?),
        _ => None,
    };
    let broker = if is_broker {
        let b = Broker::start(config, shutdown.clone()).await?;
        println!("kraftwerk listening on {} (Ctrl-C to stop)", b.local_addr);
        Some(b)
    } else {
        None
    };
    wait_for_signal().await;
    tracing::info!("shutting down");
    if let Some(b) = &broker {
        b.controlled_shutdown().await;
    }
    shutdown.cancel();
    if let Some(b) = broker {
        b.wait().await;
    }
    if let Some((node, server)) = controller {
        let _ = server.await;
        node.shutdown().await;
    }
    Ok(())
}

/// Starts this node's controller: the Raft node and its gRPC server on the
/// controller listener (`controller.listener.names`, default `CONTROLLER`),
/// or, without one, on this node's address in `controller.quorum.voters`.
async fn start_controller(
    config: &BrokerConfig,
    voters: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<(Arc<ControllerNode>, tokio::task::JoinHandle<()>)> {
    let voters = kraftwerk_broker::remote::parse_voters(voters)
        .map_err(|e| anyhow::anyhow!("controller.quorum.voters: {e}"))?;
    let node_id = u64::try_from(config.node_id).context("node.id must not be negative")?;
    let names = config
        .raw
        .get("controller.listener.names")
        .cloned()
        .unwrap_or_else(|| "CONTROLLER".into());
    let bind = match config
        .listeners
        .iter()
        .find(|l| names.split(',').any(|n| n.trim() == l.name))
    {
        Some(l) => l.bind_addr(),
        None => voters.get(&node_id).cloned().with_context(|| {
            format!("node {node_id} is not in controller.quorum.voters and has no {names} listener")
        })?,
    };
    let addr: SocketAddr = tokio::net::lookup_host(&bind)
        .await
        .with_context(|| format!("resolving controller listener {bind}"))?
        .next()
        .with_context(|| format!("controller listener {bind} resolves to nothing"))?;
    let mut cc = ControllerConfig::new(
        node_id,
        voters,
        config.log_dirs[0].join("__cluster_metadata"),
    );
    cc.cluster_id = config.cluster_id.clone();
    let node = Arc::new(
        ControllerNode::start(cc)
            .await
            .context("starting the controller")?,
    );
    let liveness = LivenessConfig {
        broker_session_timeout_ms: config
            .raw
            .get("broker.session.timeout.ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(9000),
        auto_leader_rebalance_enable: config
            .raw
            .get("auto.leader.rebalance.enable")
            .map(|v| v != "false")
            .unwrap_or(true),
        leader_imbalance_check_interval_ms: config
            .raw
            .get("leader.imbalance.check.interval.seconds")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|s| s * 1000)
            .unwrap_or(300_000),
    };
    let service = ControllerService::new(node.clone(), liveness);
    tokio::spawn(service.clone().run_liveness(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding controller listener {addr}"))?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let router = tonic::transport::Server::builder()
        .add_service(node.raft_service())
        .add_service(ControllerServer::new(ControllerGrpc(service)));
    let server = tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
            .await
        {
            tracing::error!(error = %e, "controller gRPC server failed");
        }
    });
    tracing::info!(node_id, %addr, "controller started");
    println!("kraftwerk controller {node_id} listening on {addr}");
    Ok((node, server))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
