//! `kraftwerk bench produce|consume|e2e`, modelled on
//! kafka-producer-perf-test, kafka-consumer-perf-test and kafka-e2e-latency.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
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
            let config = ConsumerConfig {
                auto_offset_reset: AutoOffsetReset::Earliest,
                ..ConsumerConfig::default()
            };
            b::consume(client, config, &args.topic, args.num_records).await?
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
            if args.connect.output == Output::Json {
                println!(
                    "{}",
                    json!({
                        "records": report.round_trips,
                        "latency_avg_ms": report.latency_avg_ms, "latency_p50_ms": report.latency_p50_ms,
                        "latency_p99_ms": report.latency_p99_ms, "latency_p999_ms": report.latency_p999_ms,
                        "latency_max_ms": report.latency_max_ms,
                    })
                );
            } else {
                println!("{report}");
            }
            return Ok(());
        }
    };
    if args.connect.output == Output::Json {
        println!(
            "{}",
            json!({
                "records": report.records, "bytes": report.bytes, "errors": report.errors,
                "elapsed_s": report.elapsed.as_secs_f64(), "records_per_sec": report.records_per_sec(), "mb_per_sec": report.mb_per_sec(),
                "latency_avg_ms": report.latency_avg_ms, "latency_max_ms": report.latency_max_ms,
                "latency_p50_ms": report.latency_p50_ms, "latency_p95_ms": report.latency_p95_ms,
                "latency_p99_ms": report.latency_p99_ms, "latency_p999_ms": report.latency_p999_ms,
            })
        );
    } else {
        println!("{report}");
    }
    Ok(())
}
