//! `kraftwerk produce` and `kraftwerk consume`: Kafka's console producer and
//! consumer, with the same idea of flags.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kraftwerk_client::{
    AutoOffsetReset, Compression, Consumer, ConsumerConfig, GroupConfig, Producer, ProducerConfig,
    ProducerRecord,
};
use serde_json::json;

use crate::{Connect, Output};

/// How many deliveries may be outstanding before the producer waits for the oldest.
const PENDING_DELIVERIES_MAX: usize = 10_000;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    connect: Connect,
    #[arg(long)]
    topic: String,
    /// Split each line at the first occurrence into key and value.
    #[arg(long)]
    key_separator: Option<String>,
    /// Read lines from this file instead of stdin (shows a progress bar).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Send every record to this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// acks: -1/all, 0 or 1.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression_type: String,
    /// linger.ms
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
}

pub fn parse_acks(s: &str) -> anyhow::Result<i16> {
    match s {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        other => bail!("acks must be all, -1, 0 or 1, not '{other}'"),
    }
}

pub fn parse_compression(s: &str) -> anyhow::Result<Compression> {
    Ok(match s {
        "none" | "uncompressed" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => bail!("unknown compression type '{other}'"),
    })
}

pub async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let config = ProducerConfig {
        acks: parse_acks(&args.acks)?,
        compression: parse_compression(&args.compression_type)?,
        linger_ms: args.linger_ms,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(
        args.connect.client_config("kraftwerk-console-producer")?,
        config,
    )
    .await
    .context("connecting to the cluster")?;
    let (reader, progress): (Box<dyn BufRead + Send>, Option<ProgressBar>) = match &args.file {
        Some(path) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = ProgressBar::new(len);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            (Box::new(BufReader::new(file)), Some(bar))
        }
        None => (Box::new(BufReader::new(std::io::stdin())), None),
    };
    let mut pending = std::collections::VecDeque::new();
    let mut sent = 0u64;
    let mut failed = 0u64;
    for line in reader.lines() {
        let line = line.context("reading input")?;
        if let Some(bar) = &progress {
            bar.inc(line.len() as u64 + 1);
        }
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(Bytes::from(k.to_string())), v.to_string()),
                None => bail!("line {} has no key separator '{sep}': {line}", sent + 1),
            },
            None => (None, line),
        };
        let mut record = ProducerRecord::new(args.topic.clone(), Bytes::from(value));
        record.key = key;
        record.partition = args.partition;
        pending.push_back(producer.send(record).await?);
        sent += 1;
        if pending.len() >= PENDING_DELIVERIES_MAX {
            if let Some(d) = pending.pop_front() {
                if let Err(e) = d.await {
                    eprintln!("error: delivery failed: {e}");
                    failed += 1;
                }
            }
        }
    }
    producer.flush().await?;
    for d in pending {
        if let Err(e) = d.await {
            eprintln!("error: delivery failed: {e}");
            failed += 1;
        }
    }
    if let Some(bar) = progress {
        bar.finish();
    }
    producer.close().await?;
    if args.connect.output == Output::Json {
        crate::print_line(json!({"topic": args.topic, "sent": sent, "failed": failed}))
            .context("writing to standard output")?;
    }
    if failed > 0 {
        bail!("{failed} of {sent} records were not delivered");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    connect: Connect,
    #[arg(long)]
    topic: String,
    /// Start at the earliest offset instead of the end.
    #[arg(long)]
    from_beginning: bool,
    /// Read only this partition (with --offset).
    #[arg(long)]
    partition: Option<i32>,
    /// Start offset in --partition: a number, `earliest` or `latest`.
    #[arg(long)]
    offset: Option<String>,
    /// Exit after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit when no record arrives for this long.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Consumer group: join it, resume from its committed offsets and commit
    /// what was printed.
    #[arg(long)]
    group: Option<String>,
    /// Print the key (human output).
    #[arg(long)]
    print_key: bool,
    /// Print headers (human output).
    #[arg(long)]
    print_headers: bool,
    /// Print partition and offset (human output).
    #[arg(long)]
    print_offset: bool,
    /// Print the timestamp (human output).
    #[arg(long)]
    print_timestamp: bool,
}

fn text(b: &Option<Bytes>) -> String {
    match b {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => "null".to_string(),
    }
}

pub async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    if args.group.is_some() && (args.partition.is_some() || args.offset.is_some()) {
        bail!("--group cannot be used with --partition or --offset");
    }
    if args.offset.is_some() && args.partition.is_none() {
        bail!("--offset needs --partition");
    }
    let config = ConsumerConfig {
        auto_offset_reset: if args.from_beginning {
            AutoOffsetReset::Earliest
        } else {
            AutoOffsetReset::Latest
        },
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(
        args.connect.client_config("kraftwerk-console-consumer")?,
        config,
    )
    .await
    .context("connecting to the cluster")?;
    match &args.group {
        Some(group) => {
            // Kafka's console consumer: a member of the group, starting from
            // the committed offsets (else --from-beginning / the end) and
            // auto-committing what it has printed.
            consumer
                .subscribe(
                    vec![args.topic.clone()],
                    GroupConfig::new(group.clone()),
                    None,
                )
                .await
                .with_context(|| format!("joining group {group}"))?;
        }
        None => {
            let partitions: Vec<(String, i32)> = match args.partition {
                Some(p) => vec![(args.topic.clone(), p)],
                None => {
                    let meta = consumer
                        .cluster()
                        .topic(&args.topic)
                        .await
                        .with_context(|| format!("looking up topic {}", args.topic))?;
                    meta.partitions
                        .iter()
                        .map(|p| (args.topic.clone(), p.partition))
                        .collect()
                }
            };
            consumer.assign(partitions.clone()).await?;
            match args.offset.as_deref() {
                Some("earliest") => consumer.seek_to_beginning(&partitions).await?,
                Some("latest") => consumer.seek_to_end(&partitions).await?,
                Some(n) => {
                    let offset: i64 = n.parse().with_context(|| {
                        format!("--offset '{n}' is not a number, earliest or latest")
                    })?;
                    consumer.seek(&args.topic, partitions[0].1, offset);
                }
                None if args.from_beginning => consumer.seek_to_beginning(&partitions).await?,
                None => consumer.seek_to_end(&partitions).await?,
            }
        }
    }
    let json = args.connect.output == Output::Json;
    let mut count = 0u64;
    let mut last_record = Instant::now();
    // Set when standard output fails (the reader went away): Kafka's
    // console consumer then stops, commits and exits normally.
    let mut output_closed = false;
    loop {
        if args.max_messages.is_some_and(|m| count >= m) {
            break;
        }
        if args
            .timeout_ms
            .is_some_and(|t| last_record.elapsed() >= Duration::from_millis(t))
        {
            break;
        }
        let records = tokio::select! {
            r = consumer.poll(Duration::from_millis(500)) => r?,
            _ = tokio::signal::ctrl_c() => break,
        };
        if !records.is_empty() {
            last_record = Instant::now();
        }
        let mut rewound: HashSet<(String, i32)> = HashSet::new();
        for r in records {
            if output_closed || args.max_messages.is_some_and(|m| count >= m) {
                // Not printed: the group's commit must not pass it.
                if rewound.insert((r.topic.clone(), r.partition)) {
                    consumer.seek(&r.topic, r.partition, r.offset);
                }
                continue;
            }
            let line = if json {
                json!({
                    "topic": r.topic, "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp_ms,
                    "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
                    "value": r.value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
                    "headers": r.headers.iter().map(|(k, v)| json!([k, text(v)])).collect::<Vec<_>>(),
                })
                .to_string()
            } else {
                let mut parts = Vec::new();
                if args.print_timestamp {
                    parts.push(format!("CreateTime:{}", r.timestamp_ms));
                }
                if args.print_offset {
                    parts.push(format!("Partition:{}\tOffset:{}", r.partition, r.offset));
                }
                if args.print_headers {
                    let h: Vec<String> = r
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{k}:{}", text(v)))
                        .collect();
                    parts.push(if h.is_empty() {
                        "NO_HEADERS".to_string()
                    } else {
                        h.join(",")
                    });
                }
                if args.print_key {
                    parts.push(text(&r.key));
                }
                parts.push(text(&r.value));
                parts.join("\t")
            };
            if crate::print_line(line).is_err() {
                // Nobody reads the output any more (`| head`): stop, as
                // Kafka's console consumer does, committing only what was
                // printed.
                output_closed = true;
                rewound.insert((r.topic.clone(), r.partition));
                consumer.seek(&r.topic, r.partition, r.offset);
                continue;
            }
            count += 1;
        }
        if output_closed {
            break;
        }
    }
    if !json {
        eprintln!("Processed a total of {count} messages");
    }
    if output_closed {
        eprintln!("Unable to write to standard out, closing consumer.");
    }
    consumer
        .close()
        .await
        .context("committing offsets and leaving the group")?;
    Ok(())
}
