//! `kafka-producer-perf-test` / `kafka-consumer-perf-test` style benchmarks
//! over the producer and consumer.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::consumer::{Consumer, ConsumerConfig};
use crate::error::{ClientError, Result};
use crate::group::GroupConfig;
use crate::producer::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use crate::ClientConfig;

/// Deliveries waiting to be timed; `send` waits when the collector lags.
const PENDING_DELIVERIES_MAX: usize = 65_536;
/// The consume benchmark stops after this long without a new record.
const CONSUME_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest latency recorded (one hour, in microseconds).
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// What to produce.
#[derive(Debug, Clone)]
pub struct BenchProduceOptions {
    pub topic: String,
    pub num_records: u64,
    pub record_size: usize,
    /// Records per second; -1 (or any value ≤ 0) means unlimited.
    pub throughput: i64,
}

/// Which side of the benchmark a report describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchKind {
    Produce,
    Consume,
}

/// Totals and latency percentiles of a run (latencies in milliseconds).
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub kind: BenchKind,
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency_avg_ms: f64,
    pub latency_max_ms: f64,
    pub latency_p50_ms: u64,
    pub latency_p95_ms: u64,
    pub latency_p99_ms: u64,
    pub latency_p999_ms: u64,
}

impl BenchReport {
    fn from_histogram(
        kind: BenchKind,
        records: u64,
        bytes: u64,
        errors: u64,
        elapsed: Duration,
        histogram: &Histogram<u64>,
    ) -> Self {
        let ms = |us: u64| us / 1000;
        BenchReport {
            kind,
            records,
            bytes,
            errors,
            elapsed,
            latency_avg_ms: histogram.mean() / 1000.0,
            latency_max_ms: histogram.max() as f64 / 1000.0,
            latency_p50_ms: ms(histogram.value_at_quantile(0.50)),
            latency_p95_ms: ms(histogram.value_at_quantile(0.95)),
            latency_p99_ms: ms(histogram.value_at_quantile(0.99)),
            latency_p999_ms: ms(histogram.value_at_quantile(0.999)),
        }
    }

    /// Records per second over the whole run.
    pub fn records_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.records as f64 / secs
        } else {
            0.0
        }
    }

    /// MiB per second over the whole run.
    pub fn mb_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 / (1024.0 * 1024.0) / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.kind {
            BenchKind::Produce => "sent",
            BenchKind::Consume => "received",
        };
        write!(
            f,
            "{} records {verb}, {:.6} records/sec ({:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency, {} ms 50th, {} ms 95th, {} ms 99th, {} ms 99.9th.",
            self.records,
            self.records_per_sec(),
            self.mb_per_sec(),
            self.latency_avg_ms,
            self.latency_max_ms,
            self.latency_p50_ms,
            self.latency_p95_ms,
            self.latency_p99_ms,
            self.latency_p999_ms,
        )
    }
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
        .map_err(|e| ClientError::Config(format!("histogram: {e}")))
}

/// Paces sends to a target rate the way the perf tool's throttler does:
/// when ahead of schedule, sleep until the schedule catches up.
#[derive(Debug)]
pub struct Throttle {
    records_per_sec: Option<f64>,
    started: Instant,
}

impl Throttle {
    /// `throughput ≤ 0` disables throttling.
    pub fn new(throughput: i64, started: Instant) -> Self {
        Throttle {
            records_per_sec: (throughput > 0).then_some(throughput as f64),
            started,
        }
    }

    /// How long to wait before sending record number `sent` (0-based).
    pub fn delay(&self, sent: u64, now: Instant) -> Option<Duration> {
        let rate = self.records_per_sec?;
        let due = self.started + Duration::from_secs_f64(sent as f64 / rate);
        (due > now).then(|| due - now)
    }
}

/// Produces `num_records` records of `record_size` random bytes and reports
/// throughput and send-to-acknowledgement latency.
pub async fn produce(
    client: ClientConfig,
    config: ProducerConfig,
    options: BenchProduceOptions,
) -> Result<BenchReport> {
    let producer = Producer::new(client, config).await?;
    let payload: Bytes = {
        let mut rng = rand::rng();
        (0..options.record_size)
            .map(|_| rng.random_range(b'A'..=b'Z'))
            .collect::<Vec<u8>>()
            .into()
    };
    let (pending_tx, mut pending_rx) =
        mpsc::channel::<(Instant, DeliveryFuture)>(PENDING_DELIVERIES_MAX);
    let collector = tokio::spawn(async move {
        let mut histogram = new_histogram()?;
        let mut acknowledged = 0u64;
        let mut errors = 0u64;
        // Futures are awaited in send order; a record acknowledged before an
        // earlier one is timed when its turn comes (exact for one partition).
        while let Some((sent_at, delivery)) = pending_rx.recv().await {
            match delivery.await {
                Ok(_) => {
                    acknowledged += 1;
                    let us = sent_at.elapsed().as_micros() as u64;
                    let _ = histogram.record(us.clamp(1, LATENCY_MAX_US));
                }
                Err(err) => {
                    errors += 1;
                    if errors <= 10 {
                        tracing::warn!(%err, "send failed");
                    }
                }
            }
        }
        Ok::<_, ClientError>((histogram, acknowledged, errors))
    });

    let started = Instant::now();
    let throttle = Throttle::new(options.throughput, started);
    for sent in 0..options.num_records {
        if let Some(delay) = throttle.delay(sent, Instant::now()) {
            tokio::time::sleep(delay).await;
        }
        let record = ProducerRecord {
            topic: options.topic.clone(),
            value: Some(payload.clone()),
            ..ProducerRecord::default()
        };
        let sent_at = Instant::now();
        let delivery = producer.send(record).await?;
        if pending_tx.send((sent_at, delivery)).await.is_err() {
            break;
        }
    }
    drop(pending_tx);
    producer.flush().await?;
    let (histogram, acknowledged, errors) = collector
        .await
        .map_err(|e| ClientError::Protocol(format!("collector task failed: {e}")))??;
    let elapsed = started.elapsed();
    producer.close().await?;
    Ok(BenchReport::from_histogram(
        BenchKind::Produce,
        acknowledged,
        acknowledged * options.record_size as u64,
        errors,
        elapsed,
        &histogram,
    ))
}

/// What to consume.
#[derive(Debug, Clone)]
pub struct BenchConsumeOptions {
    pub topic: String,
    /// Stop after this many records.
    pub num_records: u64,
    /// Stop after this long without a new record (kafka-consumer-perf-test's
    /// `--timeout`).
    pub idle_timeout: Duration,
    /// Consume as a member of this group (subscribed to `topic`, offsets
    /// committed as the group's settings say, and once more on the way
    /// out) instead of reading every partition from the beginning.
    pub group: Option<GroupConfig>,
}

impl BenchConsumeOptions {
    /// Every partition of `topic` from the beginning, no group.
    pub fn new(topic: impl Into<String>, num_records: u64) -> BenchConsumeOptions {
        BenchConsumeOptions {
            topic: topic.into(),
            num_records,
            idle_timeout: CONSUME_IDLE_TIMEOUT,
            group: None,
        }
    }
}

/// Reads `num_records` records of the topic, from the beginning of every
/// partition or as a group member; latency is the time of each poll that
/// returned records.
pub async fn consume(
    client: ClientConfig,
    config: ConsumerConfig,
    options: BenchConsumeOptions,
) -> Result<BenchReport> {
    let topic = options.topic.as_str();
    let mut consumer = Consumer::new(client, config).await?;
    let in_group = options.group.is_some();
    match options.group {
        Some(group) => {
            consumer
                .subscribe(vec![topic.to_string()], group, None)
                .await?
        }
        None => {
            let metadata = consumer.cluster().topic_with_leaders(topic).await?;
            let partitions = metadata
                .partitions
                .iter()
                .map(|p| (topic.to_string(), p.partition))
                .collect();
            consumer.assign(partitions).await?;
            consumer.seek_to_beginning(&[]).await?;
        }
    }

    let mut histogram = new_histogram()?;
    let mut records = 0u64;
    let mut bytes = 0u64;
    let started = Instant::now();
    let mut last_progress = started;
    while records < options.num_records && last_progress.elapsed() < options.idle_timeout {
        let poll_started = Instant::now();
        let batch = consumer.poll(Duration::from_millis(1000)).await?;
        if batch.is_empty() {
            continue;
        }
        let us = poll_started.elapsed().as_micros() as u64;
        let _ = histogram.record(us.clamp(1, LATENCY_MAX_US));
        last_progress = Instant::now();
        for record in &batch {
            records += 1;
            bytes += record.value.as_ref().map_or(0, |v| v.len() as u64)
                + record.key.as_ref().map_or(0, |k| k.len() as u64);
        }
    }
    let elapsed = started.elapsed();
    if in_group {
        // What was read is committed before the member leaves.
        consumer.commit_sync().await?;
        consumer.close().await?;
    }
    Ok(BenchReport::from_histogram(
        BenchKind::Consume,
        records,
        bytes,
        0,
        elapsed,
        &histogram,
    ))
}

/// End-to-end latency of one run of [`end_to_end`], in milliseconds.
#[derive(Debug, Clone)]
pub struct EndToEndReport {
    pub round_trips: u64,
    pub latency_avg_ms: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_p999_ms: f64,
    pub latency_max_ms: f64,
}

impl fmt::Display for EndToEndReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} round trips, {:.4} ms avg latency, {:.3} ms 50th, {:.3} ms 99th, {:.3} ms 99.9th, {:.3} ms max.",
            self.round_trips,
            self.latency_avg_ms,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_p999_ms,
            self.latency_max_ms,
        )
    }
}

/// How long one round trip of [`end_to_end`] may take before the run fails.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(30);

/// End-to-end latency as `kafka-e2e-latency` measures it: `num_records`
/// times, one record of `record_size` bytes is sent to partition 0 of
/// `topic` and the producer waits for its acknowledgement, then a consumer
/// positioned at the end of that partition reads it; each latency is from
/// the send until the consumer returned that record.
pub async fn end_to_end(
    client: ClientConfig,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfig,
    topic: &str,
    num_records: u64,
    record_size: usize,
) -> Result<EndToEndReport> {
    let producer = Producer::new(client.clone(), producer_config).await?;
    let mut consumer = Consumer::new(client, consumer_config).await?;
    let partition = vec![(topic.to_string(), 0)];
    consumer.assign(partition.clone()).await?;
    consumer.seek_to_end(&partition).await?;
    let mut histogram = new_histogram()?;
    let mut rng = rand::rng();
    for i in 0..num_records {
        // A value of its own per round trip, so the consumer cannot mistake
        // an earlier record for this one.
        let mut value: Vec<u8> = (0..record_size)
            .map(|_| rng.random_range(b'A'..=b'Z'))
            .collect();
        let tag = i.to_be_bytes();
        let n = tag.len().min(value.len());
        value[..n].copy_from_slice(&tag[..n]);
        let value = Bytes::from(value);
        let record = ProducerRecord {
            topic: topic.to_string(),
            partition: Some(0),
            value: Some(value.clone()),
            ..ProducerRecord::default()
        };
        let sent_at = Instant::now();
        producer.send(record).await?.await?;
        let deadline = sent_at + ROUND_TRIP_TIMEOUT;
        loop {
            if Instant::now() >= deadline {
                return Err(ClientError::Protocol(format!(
                    "round trip {i}: the record was not read back within {ROUND_TRIP_TIMEOUT:?}"
                )));
            }
            if let Some(r) = consumer.poll(Duration::from_millis(100)).await?.first() {
                if r.value.as_ref() == Some(&value) {
                    break;
                }
                return Err(ClientError::Protocol(format!(
                    "round trip {i}: read an unexpected record at offset {}",
                    r.offset
                )));
            }
        }
        let us = sent_at.elapsed().as_micros() as u64;
        let _ = histogram.record(us.clamp(1, LATENCY_MAX_US));
    }
    producer.close().await?;
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(EndToEndReport {
        round_trips: histogram.len(),
        latency_avg_ms: histogram.mean() / 1000.0,
        latency_p50_ms: ms(histogram.value_at_quantile(0.50)),
        latency_p99_ms: ms(histogram.value_at_quantile(0.99)),
        latency_p999_ms: ms(histogram.value_at_quantile(0.999)),
        latency_max_ms: ms(histogram.max()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_prints_like_the_perf_tool() {
        let mut histogram = new_histogram().expect("histogram");
        for us in [1_000u64, 2_000, 3_000, 250_000] {
            histogram.record(us).expect("record");
        }
        let report = BenchReport::from_histogram(
            BenchKind::Produce,
            1000,
            1000 * 100,
            0,
            Duration::from_secs(2),
            &histogram,
        );
        let text = report.to_string();
        assert!(
            text.starts_with("1000 records sent, 500.000000 records/sec (0.05 MB/sec), "),
            "{text}"
        );
        assert!(text.contains("ms avg latency, "));
        assert!(text.ends_with("ms 99.9th."), "{text}");
        assert_eq!(report.latency_p50_ms, 2);
    }

    #[test]
    fn throttle_paces_to_the_target_rate() {
        let start = Instant::now();
        let throttle = Throttle::new(100, start);
        assert_eq!(throttle.delay(0, start), None);
        let delay = throttle.delay(50, start).expect("ahead of schedule");
        assert!(delay >= Duration::from_millis(499) && delay <= Duration::from_millis(500));
        assert_eq!(throttle.delay(50, start + Duration::from_secs(1)), None);
        assert_eq!(Throttle::new(-1, start).delay(1_000_000, start), None);
    }
}
