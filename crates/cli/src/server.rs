//! `kraftwerk server`: run one node.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use kraftwerk_broker::Broker;
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
        None => BTreeMap::new(),
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
    if raw.contains_key("controller.quorum.voters") {
        anyhow::bail!(
            "controller.quorum.voters is set, but this build runs single-node clusters only; remove it to run one node (process.roles={roles})"
        );
    }
    let config = BrokerConfig::from_map(raw).context("invalid configuration")?;
    let shutdown = CancellationToken::new();
    let broker = Broker::start(config, shutdown.clone()).await?;
    println!(
        "kraftwerk listening on {} (Ctrl-C to stop)",
        broker.local_addr
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    broker.wait().await;
    Ok(())
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
