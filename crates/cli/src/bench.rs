//! `kraftwerk bench produce|consume|e2e`, modelled on
//! kafka-producer-perf-test, kafka-consumer-perf-test and kafka-e2e-latency.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use std::time::Duration;

use kraftwerk_client::group::{Assignor, GroupConfig};
use kraftwerk_client::{bench as b, AutoOffsetReset, ConsumerConfig, ProducerConfig};
use serde_json::json;

use crate::console::{parse_acks, parse_compression};
use crate::{key_value, Connect, Output};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BenchMode {
    Produce,
    Consume,
    /// One record at a time, sent (acks from --producer-props, default
    /// all) and read back from the end of partition 0: latency per round
    /// trip, as kafka-e2e-latency measures it.
    E2e,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    mode: BenchMode,
    #[command(flatten)]
    connect: Connect,
    #[arg(long, default_value = "kraftwerk-bench")]
    topic: String,
    /// Records (round trips for e2e).
    #[arg(long, default_value_t = 1_000_000)]
    num_records: u64,
    /// Bytes per record (produce, e2e).
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per second at most; -1 for no limit (produce).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    throughput: i64,
    /// Producer settings with Kafka's names: acks, linger.ms, batch.size, compression.type, enable.idempotence.
    #[arg(long = "producer-props", value_name = "KEY=VALUE", num_args = 1..)]
    producer_props: Vec<String>,
    /// Consume as a member of this consumer group, subscribed to the topic
    /// (offsets committed as the group settings say, and on the way out),
    /// instead of reading every partition from the beginning (consume).
    #[arg(long)]
    group: Option<String>,
    /// Stop after this long without a new record (consume).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Group consumer settings with Kafka's names: auto.commit.interval.ms,
    /// enable.auto.commit, session.timeout.ms, heartbeat.interval.ms,
    /// partition.assignment.strategy (range, roundrobin), auto.offset.reset
    /// (consume).
    #[arg(long = "consumer-props", value_name = "KEY=VALUE", num_args = 1..)]
    consumer_props: Vec<String>,
}

fn producer_config(props: &[String]) -> anyhow::Result<ProducerConfig> {
    let mut c = ProducerConfig::default();
    for p in props {
        let (k, v) = key_value(p)?;
        match k.as_str() {
            "acks" => c.acks = parse_acks(&v)?,
            "linger.ms" => c.linger_ms = v.parse().context("linger.ms")?,
            "batch.size" => c.batch_size = v.parse().context("batch.size")?,
            "compression.type" => c.compression = parse_compression(&v)?,
            "enable.idempotence" => {
                c.enable_idempotence = v.parse().context("enable.idempotence")?
            }
            "max.in.flight.requests.per.connection" => {
                c.max_in_flight_requests_per_connection = v.parse().context("max.in.flight")?
            }
            "bootstrap.servers" => {}
            other => bail!("producer property '{other}' is not supported by kraftwerk bench"),
        }
    }
    Ok(c)
}

/// The consumer and its group settings from `--group` and `--consumer-props`.
fn consumer_config(
    group: Option<&str>,
    props: &[String],
) -> anyhow::Result<(ConsumerConfig, Option<GroupConfig>)> {
    let mut consumer = ConsumerConfig {
        auto_offset_reset: AutoOffsetReset::Earliest,
        ..ConsumerConfig::default()
    };
    let mut group = group.map(GroupConfig::new);
    for p in props {
        let (k, v) = key_value(p)?;
        if k == "auto.offset.reset" {
            consumer.auto_offset_reset = match v.as_str() {
                "earliest" => AutoOffsetReset::Earliest,
                "latest" => AutoOffsetReset::Latest,
                other => bail!("auto.offset.reset={other} is not earliest or latest"),
            };
            continue;
        }
        let Some(g) = group.as_mut() else {
            bail!("consumer property '{k}' needs --group");
        };
        match k.as_str() {
            "auto.commit.interval.ms" => {
                g.auto_commit_interval_ms = v.parse().context("auto.commit.interval.ms")?
            }
            "enable.auto.commit" => {
                g.enable_auto_commit = v.parse().context("enable.auto.commit")?
            }
            "session.timeout.ms" => {
                g.session_timeout_ms = v.parse().context("session.timeout.ms")?
            }
            "heartbeat.interval.ms" => {
                g.heartbeat_interval_ms = v.parse().context("heartbeat.interval.ms")?
            }
            "partition.assignment.strategy" => {
                g.assignor = match v
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase()
                    .as_str()
                {
                    "range" | "rangeassignor" => Assignor::Range,
                    "roundrobin" | "roundrobinassignor" => Assignor::RoundRobin,
                    _ => bail!("partition.assignment.strategy={v} is not range or roundrobin"),
                }
            }
            "group.id" | "bootstrap.servers" => {}
            other => bail!("consumer property '{other}' is not supported by kraftwerk bench"),
        }
    }
    Ok((consumer, group))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let client = args.connect.client_config("kraftwerk-bench")?;
    let report = match args.mode {
        BenchMode::Produce => {
            let options = b::BenchProduceOptions {
                topic: args.topic.clone(),
                num_records: args.num_records,
                record_size: args.record_size,
                throughput: args.throughput,
            };
            b::produce(client, producer_config(&args.producer_props)?, options).await?
        }
        BenchMode::Consume => {
            let (config, group) = consumer_config(args.group.as_deref(), &args.consumer_props)?;
            let options = b::BenchConsumeOptions {
                idle_timeout: Duration::from_millis(args.timeout_ms),
                group,
                ..b::BenchConsumeOptions::new(args.topic.clone(), args.num_records)
            };
            b::consume(client, config, options).await?
        }
        BenchMode::E2e => {
            let mut producer = producer_config(&args.producer_props)?;
            if !args.producer_props.iter().any(|p| p.starts_with("acks=")) {
                producer.acks = parse_acks("all")?;
            }
            // As kafka-e2e-latency: each record goes out at once.
            if !args
                .producer_props
                .iter()
                .any(|p| p.starts_with("linger.ms="))
            {
                producer.linger_ms = 0;
            }
            let report = b::end_to_end(
                client,
                producer,
                ConsumerConfig::default(),
                &args.topic,
                args.num_records,
                args.record_size,
            )
            .await?;
            let line = if args.connect.output == Output::Json {
                json!({
                    "records": report.round_trips,
                    "latency_avg_ms": report.latency_avg_ms, "latency_p50_ms": report.latency_p50_ms,
                    "latency_p99_ms": report.latency_p99_ms, "latency_p999_ms": report.latency_p999_ms,
                    "latency_max_ms": report.latency_max_ms,
                })
                .to_string()
            } else {
                report.to_string()
            };
            return crate::print_line(line).context("writing to standard output");
        }
    };
    let line = if args.connect.output == Output::Json {
        json!({
            "records": report.records, "bytes": report.bytes, "errors": report.errors,
            "elapsed_s": report.elapsed.as_secs_f64(), "records_per_sec": report.records_per_sec(), "mb_per_sec": report.mb_per_sec(),
            "latency_avg_ms": report.latency_avg_ms, "latency_max_ms": report.latency_max_ms,
            "latency_p50_ms": report.latency_p50_ms, "latency_p95_ms": report.latency_p95_ms,
            "latency_p99_ms": report.latency_p99_ms, "latency_p999_ms": report.latency_p999_ms,
        })
        .to_string()
    } else {
        report.to_string()
    };
    crate::print_line(line).context("writing to standard output")
}
