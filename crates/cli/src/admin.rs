//! `kraftwerk topics`: Kafka's kafka-topics.sh, same flag names.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use kraftwerk_client::{Admin, NewTopic};
use serde_json::json;

use crate::{key_value, Connect, Output};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TopicsAction {
    Create,
    List,
    Describe,
    Alter,
    Delete,
}

#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// create | list | describe | alter | delete
    #[arg(value_enum)]
    action: TopicsAction,
    #[command(flatten)]
    connect: Connect,
    /// The topic (describe without --topic describes all).
    #[arg(long)]
    topic: Option<String>,
    /// Partitions for create (default: the broker's num.partitions); the new, larger total for alter.
    #[arg(long)]
    partitions: Option<i32>,
    /// Replication factor for create (default: the broker's default.replication.factor).
    #[arg(long)]
    replication_factor: Option<i16>,
    /// Topic config `key=value`, repeatable (create and alter).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    configs: Vec<String>,
    /// Config keys to remove from the topic's overrides (alter).
    #[arg(long = "delete-config", value_name = "KEY")]
    delete_configs: Vec<String>,
    /// Succeed without error when the topic already exists (create) or is missing (delete).
    #[arg(long)]
    if_not_exists: bool,
    #[arg(long)]
    if_exists: bool,
}

pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let admin = Admin::new(args.connect.client_config("kraftwerk-topics")?)
        .await
        .context("connecting to the cluster")?;
    let json = args.connect.output == Output::Json;
    let topic = || args.topic.clone().context("--topic is required");
    match args.action {
        TopicsAction::Create => {
            let name = topic()?;
            let configs = args
                .configs
                .iter()
                .map(|c| key_value(c))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let new = NewTopic {
                name: name.clone(),
                num_partitions: args.partitions.unwrap_or(-1),
                replication_factor: args.replication_factor.unwrap_or(-1),
                configs,
            };
            let results = admin.create_topics(vec![new], false).await?;
            for r in results {
                match r.error {
                    None => {
                        if json {
                            println!(
                                "{}",
                                json!({"topic": r.name, "created": true, "topic_id": r.topic_id.map(|u| u.to_string())})
                            );
                        } else {
                            println!("Created topic {}.", r.name);
                        }
                    }
                    Some(e) if args.if_not_exists && e.code() == Some(36) => {
                        if !json {
                            println!("Topic {} already exists.", r.name);
                        }
                    }
                    Some(e) => bail!("creating topic {}: {e}", r.name),
                }
            }
        }
        TopicsAction::List => {
            let mut names = admin.list_topics(true).await?;
            names.sort();
            if json {
                println!("{}", json!(names));
            } else {
                for n in names {
                    println!("{n}");
                }
            }
        }
        TopicsAction::Describe => {
            let names = match &args.topic {
                Some(t) => vec![t.clone()],
                None => admin.list_topics(true).await?,
            };
            let described = admin.describe_topics(&names).await?;
            let mut out = Vec::new();
            for t in described {
                let configs = admin.describe_configs(&t.name).await.unwrap_or_default();
                let overrides: Vec<String> = configs
                    .iter()
                    .filter(|c| c.source == 1)
                    .map(|c| format!("{}={}", c.name, c.value.clone().unwrap_or_default()))
                    .collect();
                let rf = t.partitions.first().map(|p| p.replicas.len()).unwrap_or(0);
                if json {
                    out.push(json!({
                        "topic": t.name,
                        "topic_id": t.topic_id.map(|u| u.to_string()),
                        "partition_count": t.partitions.len(),
                        "replication_factor": rf,
                        "configs": overrides,
                        "partitions": t.partitions.iter().map(|p| json!({
                            "partition": p.partition, "leader": p.leader, "leader_epoch": p.leader_epoch,
                            "replicas": p.replicas, "isr": p.isr, "offline": p.offline,
                        })).collect::<Vec<_>>(),
                    }));
                } else {
                    println!(
                        "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                        t.name,
                        t.topic_id.map(|u| u.to_string()).unwrap_or_default(),
                        t.partitions.len(),
                        rf,
                        overrides.join(",")
                    );
                    for p in &t.partitions {
                        println!(
                            "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                            t.name,
                            p.partition,
                            if p.leader < 0 {
                                "none".to_string()
                            } else {
                                p.leader.to_string()
                            },
                            join(&p.replicas),
                            join(&p.isr)
                        );
                    }
                }
            }
            if json {
                println!("{}", serde_json::Value::Array(out));
            }
        }
        TopicsAction::Alter => {
            let name = topic()?;
            if args.partitions.is_none()
                && args.configs.is_empty()
                && args.delete_configs.is_empty()
            {
                bail!("alter needs --partitions, --config or --delete-config");
            }
            if let Some(p) = args.partitions {
                admin
                    .create_partitions(&name, p)
                    .await
                    .with_context(|| format!("growing {name} to {p} partitions"))?;
            }
            if !args.configs.is_empty() || !args.delete_configs.is_empty() {
                let mut changes: Vec<(String, Option<String>)> = Vec::new();
                for c in &args.configs {
                    let (k, v) = key_value(c)?;
                    changes.push((k, Some(v)));
                }
                for k in &args.delete_configs {
                    changes.push((k.clone(), None));
                }
                admin
                    .alter_topic_configs(&name, changes)
                    .await
                    .with_context(|| format!("altering configs of {name}"))?;
            }
            if json {
                println!("{}", json!({"topic": name, "altered": true}));
            } else {
                println!("Altered topic {name}.");
            }
        }
        TopicsAction::Delete => {
            let name = topic()?;
            for r in admin.delete_topics(vec![name]).await? {
                match r.error {
                    None => {
                        if json {
                            println!("{}", json!({"topic": r.name, "deleted": true}));
                        } else {
                            println!("Deleted topic {}.", r.name);
                        }
                    }
                    Some(e) if args.if_exists && e.code() == Some(3) => {}
                    Some(e) => bail!("deleting topic {}: {e}", r.name),
                }
            }
        }
    }
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
