//! `kraftwerk cluster describe|quorum`: the cluster's brokers and its
//! metadata quorum, over the Kafka protocol (DescribeCluster, DescribeQuorum).

use anyhow::Context;
use clap::{Args, ValueEnum};
use kraftwerk_client::Admin;
use serde_json::json;

use crate::{Connect, Output};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ClusterAction {
    /// Brokers, racks, fenced state, active controller.
    Describe,
    /// Leader, epoch, high watermark and each voter's lag (like kafka-metadata-quorum describe --status).
    Quorum,
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[arg(value_enum)]
    action: ClusterAction,
    #[command(flatten)]
    connect: Connect,
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let admin = Admin::new(args.connect.client_config("kraftwerk-cluster")?)
        .await
        .context("connecting to the cluster")?;
    let json = args.connect.output == Output::Json;
    let quorum = admin
        .describe_quorum()
        .await
        .context("describing the metadata quorum")?;
    match args.action {
        ClusterAction::Describe => {
            let c = admin.describe_cluster().await?;
            if json {
                println!(
                    "{}",
                    json!({
                        "cluster_id": c.cluster_id,
                        "active_controller": quorum.leader_id,
                        "brokers": c.brokers.iter().map(|b| json!({"id": b.id, "host": b.host, "port": b.port, "rack": b.rack, "fenced": b.fenced})).collect::<Vec<_>>(),
                    })
                );
            } else {
                println!("ClusterId: {}", c.cluster_id.unwrap_or_default());
                println!("ActiveController: {}", quorum.leader_id);
                for b in c.brokers {
                    println!(
                        "Broker: {}\tEndpoint: {}:{}\tRack: {}\tFenced: {}",
                        b.id,
                        b.host,
                        b.port,
                        b.rack.unwrap_or_else(|| "-".into()),
                        b.fenced
                    );
                }
            }
        }
        ClusterAction::Quorum => {
            let leader_end = quorum
                .voters
                .iter()
                .find(|(id, _)| *id == quorum.leader_id)
                .map(|(_, e)| *e)
                .unwrap_or(quorum.high_watermark);
            if json {
                println!(
                    "{}",
                    json!({
                        "leader_id": quorum.leader_id, "leader_epoch": quorum.leader_epoch, "high_watermark": quorum.high_watermark,
                        "voters": quorum.voters.iter().map(|(id, end)| json!({"id": id, "log_end_offset": end, "lag": if *end >= 0 { leader_end - end } else { -1 }})).collect::<Vec<_>>(),
                    })
                );
            } else {
                println!("LeaderId:      {}", quorum.leader_id);
                println!("LeaderEpoch:   {}", quorum.leader_epoch);
                println!("HighWatermark: {}", quorum.high_watermark);
                println!("NodeId\tLogEndOffset\tLag");
                for (id, end) in &quorum.voters {
                    let lag = if *end >= 0 {
                        (leader_end - end).to_string()
                    } else {
                        "unknown".into()
                    };
                    println!("{id}\t{end}\t{lag}");
                }
            }
        }
    }
    Ok(())
}
