//! `kraftwerk transactions`: Kafka's kafka-transactions.sh, same actions
//! and flag names: list, describe, describe-producers, find-hanging, abort.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use kraftwerk_client::{Admin, ProducerDescription};
use serde_json::json;

use crate::{Connect, Output};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TransactionsAction {
    List,
    Describe,
    DescribeProducers,
    FindHanging,
    Abort,
}

#[derive(Debug, Args)]
pub struct TransactionsArgs {
    /// list | describe | describe-producers | find-hanging | abort
    #[arg(value_enum)]
    action: TransactionsAction,
    #[command(flatten)]
    connect: Connect,
    /// describe: the transactional id.
    #[arg(long)]
    transactional_id: Option<String>,
    /// describe-producers, abort: the topic; find-hanging: only this topic.
    #[arg(long)]
    topic: Option<String>,
    /// describe-producers, abort: the partition; find-hanging: only this one.
    #[arg(long)]
    partition: Option<i32>,
    /// abort: the first offset of the transaction to abort in the
    /// partition (its producer is looked up with describe-producers).
    #[arg(long)]
    start_offset: Option<i64>,
    /// abort: the producer, when `--start-offset` is not given.
    #[arg(long)]
    producer_id: Option<i64>,
    /// abort: the producer's epoch, with `--producer-id`.
    #[arg(long)]
    producer_epoch: Option<i16>,
    /// abort: the coordinator epoch, with `--producer-id`.
    #[arg(long)]
    coordinator_epoch: Option<i32>,
    /// find-hanging: a transaction open longer than this many minutes whose
    /// coordinator does not know it is hanging (Kafka's default: 15).
    #[arg(long, default_value_t = 15)]
    max_transaction_timeout: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub async fn run(args: TransactionsArgs) -> anyhow::Result<()> {
    let admin = Admin::new(args.connect.client_config("kraftwerk-transactions")?)
        .await
        .context("connecting to the cluster")?;
    let json = args.connect.output == Output::Json;
    let topic_partition = || -> anyhow::Result<(String, i32)> {
        let topic = args.topic.clone().context("--topic is required")?;
        let partition = args.partition.context("--partition is required")?;
        Ok((topic, partition))
    };
    match args.action {
        TransactionsAction::List => {
            let listed = admin.list_transactions().await?;
            if json {
                let rows: Vec<_> = listed
                    .iter()
                    .map(|t| json!({"transactional_id": t.transactional_id, "coordinator": t.coordinator_id, "producer_id": t.producer_id, "state": t.state}))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(
                    "{:<40} {:>11} {:>12} TransactionState",
                    "TransactionalId", "Coordinator", "ProducerId"
                );
                for t in listed {
                    println!(
                        "{:<40} {:>11} {:>12} {}",
                        t.transactional_id, t.coordinator_id, t.producer_id, t.state
                    );
                }
            }
        }
        TransactionsAction::Describe => {
            let id = args
                .transactional_id
                .clone()
                .context("--transactional-id is required")?;
            let d = admin
                .describe_transaction(&id)
                .await
                .with_context(|| format!("describing transactional id '{id}'"))?;
            let partitions: Vec<String> = d
                .partitions
                .iter()
                .map(|(t, p)| format!("{t}-{p}"))
                .collect();
            let duration_s = if d.start_time_ms >= 0 {
                Some((now_ms() - d.start_time_ms) / 1000)
            } else {
                None
            };
            if json {
                println!(
                    "{}",
                    json!({"transactional_id": d.transactional_id, "coordinator": d.coordinator_id,
                        "producer_id": d.producer_id, "producer_epoch": d.producer_epoch,
                        "state": d.state, "timeout_ms": d.timeout_ms,
                        "start_time_ms": d.start_time_ms, "duration_s": duration_s,
                        "partitions": partitions})
                );
            } else {
                println!(
                    "{:<11} {:<30} {:>10} {:>13} {:<16} {:>16} {:>21} {:>12} TopicPartitions",
                    "CoordinatorId",
                    "TransactionalId",
                    "ProducerId",
                    "ProducerEpoch",
                    "TransactionState",
                    "TimeoutMs",
                    "CurrentStartTimeMs",
                    "DurationSec",
                );
                println!(
                    "{:<13} {:<30} {:>10} {:>13} {:<16} {:>16} {:>21} {:>12} {}",
                    d.coordinator_id,
                    d.transactional_id,
                    d.producer_id,
                    d.producer_epoch,
                    d.state,
                    d.timeout_ms,
                    if d.start_time_ms >= 0 {
                        d.start_time_ms.to_string()
                    } else {
                        "None".into()
                    },
                    duration_s.map_or("None".to_string(), |s| s.to_string()),
                    partitions.join(",")
                );
            }
        }
        TransactionsAction::DescribeProducers => {
            let (topic, partition) = topic_partition()?;
            let producers = admin.describe_producers(&topic, partition).await?;
            print_producers(&producers, json);
        }
        TransactionsAction::FindHanging => find_hanging(&admin, &args, json).await?,
        TransactionsAction::Abort => {
            let (topic, partition) = topic_partition()?;
            let (producer_id, epoch, coordinator_epoch) = match args.start_offset {
                Some(start) => {
                    let producers = admin.describe_producers(&topic, partition).await?;
                    let Some(p) = producers
                        .iter()
                        .find(|p| p.current_txn_start_offset == start)
                    else {
                        bail!(
                            "no open transaction in {topic}-{partition} starts at offset {start}"
                        );
                    };
                    (p.producer_id, p.producer_epoch as i16, p.coordinator_epoch)
                }
                None => (
                    args.producer_id
                        .context("--start-offset or --producer-id is required")?,
                    args.producer_epoch
                        .context("--producer-epoch is required")?,
                    args.coordinator_epoch
                        .context("--coordinator-epoch is required")?,
                ),
            };
            admin
                .abort_transaction(&topic, partition, producer_id, epoch, coordinator_epoch)
                .await
                .with_context(|| {
                    format!("aborting producer {producer_id}'s transaction in {topic}-{partition}")
                })?;
            if json {
                println!(
                    "{}",
                    json!({"topic": topic, "partition": partition, "producer_id": producer_id, "aborted": true})
                );
            } else {
                println!(
                    "Aborted the transaction of producer {producer_id} in {topic}-{partition}."
                );
            }
        }
    }
    Ok(())
}

fn print_producers(producers: &[ProducerDescription], json: bool) {
    if json {
        let rows: Vec<_> = producers
            .iter()
            .map(|p| json!({"producer_id": p.producer_id, "producer_epoch": p.producer_epoch,
                "latest_coordinator_epoch": p.coordinator_epoch, "last_sequence": p.last_sequence,
                "last_timestamp": p.last_timestamp,
                "current_transaction_start_offset": (p.current_txn_start_offset >= 0).then_some(p.current_txn_start_offset)}))
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    println!(
        "{:>10} {:>13} {:>22} {:>16} {:>15} {:>28}",
        "ProducerId",
        "ProducerEpoch",
        "LatestCoordinatorEpoch",
        "LastSequence",
        "LastTimestamp",
        "CurrentTransactionStartOffset"
    );
    for p in producers {
        let start = if p.current_txn_start_offset >= 0 {
            p.current_txn_start_offset.to_string()
        } else {
            "None".to_string()
        };
        println!(
            "{:>10} {:>13} {:>22} {:>16} {:>15} {:>28}",
            p.producer_id,
            p.producer_epoch,
            p.coordinator_epoch,
            p.last_sequence,
            p.last_timestamp,
            start
        );
    }
}

/// Open transactions older than `--max-transaction-timeout` minutes in
/// partitions (all, or `--topic`/`--partition`) that their coordinator does
/// not list as part of the producer's ongoing transaction.
async fn find_hanging(admin: &Admin, args: &TransactionsArgs, json: bool) -> anyhow::Result<()> {
    let topics = match &args.topic {
        Some(t) => vec![t.clone()],
        None => admin.list_topics(true).await?,
    };
    let ongoing = admin.list_transactions().await?;
    let older_than = now_ms() - args.max_transaction_timeout * 60_000;
    let mut hanging = Vec::new();
    for topic in topics {
        let described = admin.describe_topics(std::slice::from_ref(&topic)).await?;
        let Some(d) = described.into_iter().next() else {
            continue;
        };
        for p in d.partitions {
            if args.partition.is_some_and(|want| want != p.partition) {
                continue;
            }
            let Ok(producers) = admin.describe_producers(&topic, p.partition).await else {
                continue;
            };
            for producer in producers {
                if producer.current_txn_start_offset < 0 || producer.last_timestamp > older_than {
                    continue;
                }
                let known = match ongoing
                    .iter()
                    .find(|t| t.producer_id == producer.producer_id && t.state == "Ongoing")
                {
                    Some(t) => admin
                        .describe_transaction(&t.transactional_id)
                        .await
                        .map(|d| d.partitions.contains(&(topic.clone(), p.partition)))
                        .unwrap_or(false),
                    None => false,
                };
                if !known {
                    hanging.push((topic.clone(), p.partition, producer));
                }
            }
        }
    }
    if json {
        let rows: Vec<_> = hanging
            .iter()
            .map(|(t, p, pr)| {
                json!({"topic": t, "partition": p, "producer_id": pr.producer_id,
                "producer_epoch": pr.producer_epoch, "coordinator_epoch": pr.coordinator_epoch,
                "start_offset": pr.current_txn_start_offset, "last_timestamp": pr.last_timestamp})
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    println!(
        "{:<30} {:>9} {:>10} {:>13} {:>16} {:>11} {:>15} {:>13}",
        "Topic",
        "Partition",
        "ProducerId",
        "ProducerEpoch",
        "CoordinatorEpoch",
        "StartOffset",
        "LastTimestamp",
        "Duration(min)"
    );
    for (t, p, pr) in hanging {
        println!(
            "{:<30} {:>9} {:>10} {:>13} {:>16} {:>11} {:>15} {:>13}",
            t,
            p,
            pr.producer_id,
            pr.producer_epoch,
            pr.coordinator_epoch,
            pr.current_txn_start_offset,
            pr.last_timestamp,
            (now_ms() - pr.last_timestamp) / 60_000
        );
    }
    Ok(())
}
