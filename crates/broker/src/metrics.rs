//! Prometheus metrics, named as Kafka's JMX exporter names Kafka's own
//! (`kafka_server_brokertopicmetrics_bytesinpersec`, ...), served on the
//! HTTP listener (`kraftwerk.http.listener`) at `GET /metrics` in the
//! OpenMetrics text format.
//!
//! The hot path only adds to per-topic and per-API counters (one map
//! lookup per topic per request, never per record); everything that is
//! state rather than a count (under-replicated partitions, log sizes, the
//! active controller, the metadata quorum, process CPU and memory) is read
//! when scraped.
//!
//! The same listener serves `GET /api/v1/stats` ([`crate::stats`]), the
//! per-topic counters of every broker as JSON.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use kraftwerk_metadata::MetadataImage;
use kraftwerk_rpc::replication as pb;
use kraftwerk_types::{BrokerConfig, ErrorCode};
use parking_lot::{Mutex, RwLock};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::BrokerState;

/// The broker configuration key of the HTTP listener (`host:port`; empty
/// turns it off).
pub const HTTP_LISTENER_KEY: &str = "kraftwerk.http.listener";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub request: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub consumergroup: String,
    pub topic: String,
    pub partition: String,
}

/// The counters of one topic, shared with the Prometheus families (a
/// `Counter` clone adds to the same value).
#[derive(Clone)]
struct TopicCounters {
    bytes_in: Counter,
    bytes_out: Counter,
    messages_in: Counter,
}

/// One topic's counters since the process started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicTotals {
    pub topic: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages_in: u64,
}

/// The metadata quorum as this node sees it when scraped (KRaft's
/// `kafka.server:type=raft-metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumView {
    /// The quorum leader's node id.
    pub leader: Option<u64>,
    /// The Raft term (KRaft's epoch).
    pub epoch: Option<u64>,
    /// The last committed offset of the metadata log this node knows.
    pub high_watermark: Option<u64>,
    /// What only a node hosting a controller knows.
    pub controller: Option<ControllerView>,
}

/// The local controller's side of [`QuorumView`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerView {
    /// KRaft's name of the Raft state (`leader`, `follower`, ...), if known.
    pub state: Option<String>,
    pub log_end_offset: Option<u64>,
    /// On the leader: each voter's id and how many entries it lags behind
    /// the leader's log end offset.
    pub voter_lag: Vec<(u64, u64)>,
}

/// How long a scrape waits for this node's own controller to describe the
/// quorum before it reports what the broker side knows.
const LOCAL_QUORUM_STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// The values that are not a `Counter` or `Gauge` of the registry: the
/// leader-election count under its JMX exporter name (which ends in
/// `_count`, a suffix an OpenMetrics counter cannot have) and the quorum
/// metrics, some of which exist only on controller nodes.
#[derive(Debug, Default)]
struct ScrapedValues {
    leader_elections: AtomicU64,
    unclean_elections: AtomicU64,
    quorum: Mutex<QuorumView>,
}

impl Collector for ScrapedValues {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        fn gauge(
            encoder: &mut DescriptorEncoder,
            name: &str,
            help: &str,
            value: i64,
        ) -> Result<(), std::fmt::Error> {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        }
        let or_unknown = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok()).unwrap_or(-1);
        let elections = ConstGauge::new(
            i64::try_from(self.leader_elections.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        );
        // `unknown` (the JMX exporter's `untyped`): a monotonic count.
        elections.encode(encoder.encode_descriptor(
            "kafka_controller_controllerstats_leaderelectionrateandtimems_count",
            "Partition leader elections seen in this node's metadata image since it started (a partition's leader changed, to or from none included)",
            None,
            MetricType::Unknown,
        )?)?;
        let unclean = prometheus_client::metrics::counter::ConstCounter::new(
            self.unclean_elections.load(Ordering::Relaxed),
        );
        unclean.encode(encoder.encode_descriptor(
            "kafka_controller_controllerstats_uncleanleaderelectionspersec",
            "Partition leader elections seen in this node's metadata image that made a replica outside the partition's ISR its leader (unclean.leader.election.enable)",
            None,
            unclean.metric_type(),
        )?)?;
        let quorum = self.quorum.lock().clone();
        gauge(
            &mut encoder,
            "kafka_server_raftmetrics_current_leader",
            "Node id of the metadata quorum's leader as this node knows it, -1 if unknown",
            or_unknown(quorum.leader),
        )?;
        gauge(
            &mut encoder,
            "kafka_server_raftmetrics_current_epoch",
            "The metadata quorum's epoch (Raft term) as this node knows it, -1 if unknown",
            or_unknown(quorum.epoch),
        )?;
        gauge(
            &mut encoder,
            "kafka_server_raftmetrics_high_watermark",
            "The metadata log's committed offset as this node knows it, -1 if unknown",
            or_unknown(quorum.high_watermark),
        )?;
        let Some(controller) = quorum.controller else {
            return Ok(());
        };
        gauge(
            &mut encoder,
            "kafka_server_raftmetrics_log_end_offset",
            "The end offset of this controller's copy of the metadata log, -1 if unknown",
            or_unknown(controller.log_end_offset),
        )?;
        if let Some(state) = &controller.state {
            let mut family = encoder.encode_descriptor(
                "kafka_server_raftmetrics_current_state",
                "1 for this controller's Raft state (leader, candidate, follower, observer)",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1i64).encode(family.encode_family(&[("state", state.as_str())])?)?;
        }
        if !controller.voter_lag.is_empty() {
            let mut family = encoder.encode_descriptor(
                "kafka_server_raftmetrics_voter_lag",
                "On the quorum leader: how many metadata log entries each voter lags behind it",
                None,
                MetricType::Gauge,
            )?;
            for (voter, lag) in &controller.voter_lag {
                ConstGauge::new(i64::try_from(*lag).unwrap_or(i64::MAX))
                    .encode(family.encode_family(&[("voter", voter.to_string())])?)?;
            }
        }
        Ok(())
    }
}

fn request_histogram() -> Histogram {
    // 0.1 ms to about 6.5 s.
    Histogram::new(exponential_buckets(0.1, 2.0, 17))
}

/// Every metric a broker exports.
pub struct BrokerMetrics {
    registry: Registry,
    bytes_in: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    messages_in: Family<TopicLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    request_time_ms: Family<RequestLabels, Histogram, fn() -> Histogram>,
    under_replicated: Gauge,
    isr_shrinks: Counter,
    isr_expands: Counter,
    partition_count: Gauge,
    leader_count: Gauge,
    active_controller: Gauge,
    offline_partitions: Gauge,
    log_size: Family<PartitionLabels, Gauge>,
    group_lag: Family<LagLabels, Gauge>,
    process: ProcessGauges,
    /// Each topic's counters by name: one lookup by `&str` on the hot path.
    /// Grows with the topics this node served (as the families do).
    topics: RwLock<HashMap<String, TopicCounters>>,
    /// Requests answered, all APIs together.
    requests_total: AtomicU64,
    scraped: Arc<ScrapedValues>,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics::new()
    }
}

impl BrokerMetrics {
    pub fn new() -> BrokerMetrics {
        let mut registry = Registry::default();
        let bytes_in = Family::<TopicLabels, Counter>::default();
        let bytes_out = Family::<TopicLabels, Counter>::default();
        let messages_in = Family::<TopicLabels, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_time_ms =
            Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                request_histogram,
            );
        let under_replicated = Gauge::default();
        let isr_shrinks = Counter::default();
        let isr_expands = Counter::default();
        let partition_count = Gauge::default();
        let leader_count = Gauge::default();
        let active_controller = Gauge::default();
        let offline_partitions = Gauge::default();
        let log_size = Family::<PartitionLabels, Gauge>::default();
        let group_lag = Family::<LagLabels, Gauge>::default();
        registry.register(
            "kafka_server_brokertopicmetrics_bytesinpersec",
            "Bytes of record batches appended by producers, per topic",
            bytes_in.clone(),
        );
        registry.register(
            "kafka_server_brokertopicmetrics_bytesoutpersec",
            "Bytes of record batches sent to consumers, per topic",
            bytes_out.clone(),
        );
        registry.register(
            "kafka_server_brokertopicmetrics_messagesinpersec",
            "Records appended by producers, per topic",
            messages_in.clone(),
        );
        registry.register(
            "kafka_network_requestmetrics_requestspersec",
            "Kafka requests answered, per API",
            requests.clone(),
        );
        registry.register(
            "kafka_network_requestmetrics_totaltimems",
            "Time from a request's arrival to its answer in milliseconds, per API",
            request_time_ms.clone(),
        );
        registry.register(
            "kafka_server_replicamanager_underreplicatedpartitions",
            "Partitions led here whose ISR is smaller than their replica set",
            under_replicated.clone(),
        );
        registry.register(
            "kafka_server_replicamanager_isrshrinkspersec",
            "ISR shrinks of partitions led here (the leader's or the controller's)",
            isr_shrinks.clone(),
        );
        registry.register(
            "kafka_server_replicamanager_isrexpandspersec",
            "ISR expansions of partitions led here",
            isr_expands.clone(),
        );
        registry.register(
            "kafka_server_replicamanager_partitioncount",
            "Partitions with a replica on this broker",
            partition_count.clone(),
        );
        registry.register(
            "kafka_server_replicamanager_leadercount",
            "Partitions led by this broker",
            leader_count.clone(),
        );
        registry.register(
            "kafka_controller_kafkacontroller_activecontrollercount",
            "1 on the node that is the active controller, 0 elsewhere",
            active_controller.clone(),
        );
        registry.register(
            "kafka_controller_kafkacontroller_offlinepartitionscount",
            "Partitions without a leader (reported by the active controller)",
            offline_partitions.clone(),
        );
        registry.register(
            "kafka_log_log_size",
            "Bytes of a partition's log on this broker",
            log_size.clone(),
        );
        registry.register(
            "kafka_consumergroup_lag",
            "High watermark minus the committed offset, per group and partition (groups coordinated here; the high watermark of a replica here, else the leader's)",
            group_lag.clone(),
        );
        let process = ProcessGauges::register(&mut registry);
        let scraped = Arc::new(ScrapedValues::default());
        registry.register_collector(Box::new(scraped.clone()));
        BrokerMetrics {
            registry,
            bytes_in,
            bytes_out,
            messages_in,
            requests,
            request_time_ms,
            under_replicated,
            isr_shrinks,
            isr_expands,
            partition_count,
            leader_count,
            active_controller,
            offline_partitions,
            log_size,
            group_lag,
            process,
            topics: RwLock::new(HashMap::new()),
            requests_total: AtomicU64::new(0),
            scraped,
        }
    }

    /// Runs `f` on `topic`'s counters, creating them (and their series)
    /// the first time the topic is seen.
    fn with_topic(&self, topic: &str, f: impl FnOnce(&TopicCounters)) {
        if let Some(counters) = self.topics.read().get(topic) {
            f(counters);
            return;
        }
        let mut topics = self.topics.write();
        let counters = topics.entry(topic.to_string()).or_insert_with(|| {
            let labels = TopicLabels {
                topic: topic.to_string(),
            };
            TopicCounters {
                bytes_in: self.bytes_in.get_or_create_owned(&labels),
                bytes_out: self.bytes_out.get_or_create_owned(&labels),
                messages_in: self.messages_in.get_or_create_owned(&labels),
            }
        });
        f(counters);
    }

    /// A producer's batches were appended to `topic`.
    pub fn produced(&self, topic: &str, bytes: u64, records: u64) {
        self.with_topic(topic, |c| {
            c.bytes_in.inc_by(bytes);
            c.messages_in.inc_by(records);
        });
    }

    /// Record batches of `topic` went out in a consumer's fetch answer.
    pub fn fetched(&self, topic: &str, bytes: u64) {
        if bytes == 0 {
            return;
        }
        self.with_topic(topic, |c| {
            c.bytes_out.inc_by(bytes);
        });
    }

    /// ISRs of partitions led here shrank or grew in a new image.
    pub fn isr_changed(&self, shrinks: u64, expands: u64) {
        self.isr_shrinks.inc_by(shrinks);
        self.isr_expands.inc_by(expands);
    }

    /// A new image elected `elections` partition leaders ([`leader_elections`]).
    pub fn leaders_elected(&self, elections: u64) {
        self.scraped
            .leader_elections
            .fetch_add(elections, Ordering::Relaxed);
    }

    /// Adds unclean partition leader elections seen in this node's image.
    pub fn unclean_leaders_elected(&self, elections: u64) {
        self.scraped
            .unclean_elections
            .fetch_add(elections, Ordering::Relaxed);
    }

    /// One request of `api` was answered after `elapsed`.
    pub fn answered(&self, api: &'static str, elapsed: Duration) {
        let labels = RequestLabels { request: api };
        self.requests.get_or_create(&labels).inc();
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        self.request_time_ms
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64() * 1000.0);
    }

    /// Each topic's counters since the process started, by topic name.
    pub fn topic_totals(&self) -> Vec<TopicTotals> {
        let mut totals: Vec<TopicTotals> = self
            .topics
            .read()
            .iter()
            .map(|(topic, c)| TopicTotals {
                topic: topic.clone(),
                bytes_in: c.bytes_in.get(),
                bytes_out: c.bytes_out.get(),
                messages_in: c.messages_in.get(),
            })
            .collect();
        totals.sort_by(|a, b| a.topic.cmp(&b.topic));
        totals
    }

    /// Kafka requests answered since the process started, all APIs together.
    pub fn requests_total(&self) -> u64 {
        self.requests_total.load(Ordering::Relaxed)
    }

    /// The quorum as the next scrape reports it.
    pub fn set_quorum(&self, quorum: QuorumView) {
        *self.scraped.quorum.lock() = quorum;
    }

    /// Reads the state-like metrics, then encodes everything.
    /// `remote_high_watermarks` are those of partitions without a replica
    /// here, as their leaders answered ([`remote_high_watermarks`]).
    pub fn render(
        &self,
        state: &BrokerState,
        remote_high_watermarks: &RemoteHighWatermarks,
    ) -> String {
        let image = state.image.load();
        let me = state.config.node_id;
        let (mut partitions, mut leaders, mut under, mut offline) = (0i64, 0i64, 0i64, 0i64);
        for topic in image.topics.values() {
            for p in &topic.partitions {
                if p.leader < 0 {
                    offline += 1;
                }
                if p.replicas.contains(&me) {
                    partitions += 1;
                }
                if p.leader == me {
                    leaders += 1;
                    if p.isr.len() < p.replicas.len() {
                        under += 1;
                    }
                }
            }
        }
        let active = image.controller_id == me;
        self.partition_count.set(partitions);
        self.leader_count.set(leaders);
        self.under_replicated.set(under);
        self.active_controller.set(i64::from(active));
        self.offline_partitions
            .set(if active { offline } else { 0 });
        self.log_size.clear();
        for p in state.replicas.all() {
            self.log_size
                .get_or_create(&PartitionLabels {
                    topic: p.topic_partition.topic.clone(),
                    partition: p.topic_partition.partition.to_string(),
                })
                .set(p.log.size_bytes() as i64);
        }
        self.group_lag.clear();
        for group in state.groups.all_groups() {
            let g = group.lock();
            for ((topic, partition), committed) in &g.offsets {
                // Any replica here knows the high watermark: the leader's
                // own, a follower's as of its last fetch. Else the leader
                // told it for this scrape; a partition whose leader did not
                // answer in time is left out.
                let high_watermark = match state.replicas.get(topic, *partition) {
                    Some(p) => p.high_watermark(),
                    None => match remote_high_watermarks.get(&(topic.clone(), *partition)) {
                        Some(hw) => *hw,
                        None => continue,
                    },
                };
                if committed.offset < 0 {
                    continue;
                }
                self.group_lag
                    .get_or_create(&LagLabels {
                        consumergroup: g.group_id.clone(),
                        topic: topic.clone(),
                        partition: partition.to_string(),
                    })
                    .set((high_watermark - committed.offset).max(0));
            }
        }
        self.process.update();
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        out
    }
}

/// What a dedicated controller (`process.roles=controller`) serves at
/// `GET /metrics`: the controller's and the quorum's metrics under the
/// same names as on a combined node, and the process's CPU and memory.
/// A dedicated controller has no partitions, groups or Kafka listener, so
/// none of the broker's families appear.
pub struct ControllerMetrics {
    registry: Registry,
    active_controller: Gauge,
    offline_partitions: Gauge,
    topic_count: Gauge,
    partition_count: Gauge,
    process: ProcessGauges,
    scraped: Arc<ScrapedValues>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        ControllerMetrics::new()
    }
}

impl ControllerMetrics {
    pub fn new() -> ControllerMetrics {
        let mut registry = Registry::default();
        let active_controller = Gauge::default();
        let offline_partitions = Gauge::default();
        let topic_count = Gauge::default();
        let partition_count = Gauge::default();
        registry.register(
            "kafka_controller_kafkacontroller_activecontrollercount",
            "1 on the node that is the active controller, 0 elsewhere",
            active_controller.clone(),
        );
        registry.register(
            "kafka_controller_kafkacontroller_offlinepartitionscount",
            "Partitions without a leader (reported by the active controller)",
            offline_partitions.clone(),
        );
        registry.register(
            "kafka_controller_kafkacontroller_globaltopiccount",
            "Topics in the metadata image (reported by the active controller)",
            topic_count.clone(),
        );
        registry.register(
            "kafka_controller_kafkacontroller_globalpartitioncount",
            "Partitions in the metadata image (reported by the active controller)",
            partition_count.clone(),
        );
        let process = ProcessGauges::register(&mut registry);
        let scraped = Arc::new(ScrapedValues::default());
        registry.register_collector(Box::new(scraped.clone()));
        ControllerMetrics {
            registry,
            active_controller,
            offline_partitions,
            topic_count,
            partition_count,
            process,
            scraped,
        }
    }

    /// Adds partition leader elections seen in the controller's image.
    pub fn leaders_elected(&self, elections: u64) {
        self.scraped
            .leader_elections
            .fetch_add(elections, Ordering::Relaxed);
    }

    /// Adds unclean partition leader elections seen in the controller's image.
    pub fn unclean_leaders_elected(&self, elections: u64) {
        self.scraped
            .unclean_elections
            .fetch_add(elections, Ordering::Relaxed);
    }

    /// Encodes everything, with the image and the quorum as they are now.
    pub fn render(&self, image: &MetadataImage, quorum: QuorumView, active: bool) -> String {
        let (mut partitions, mut offline) = (0i64, 0i64);
        for topic in image.topics.values() {
            for p in &topic.partitions {
                partitions += 1;
                if p.leader < 0 {
                    offline += 1;
                }
            }
        }
        let only_active = |v: i64| if active { v } else { 0 };
        self.active_controller.set(i64::from(active));
        self.offline_partitions.set(only_active(offline));
        self.topic_count.set(only_active(
            i64::try_from(image.topics.len()).unwrap_or(i64::MAX),
        ));
        self.partition_count.set(only_active(partitions));
        self.process.update();
        *self.scraped.quorum.lock() = quorum;
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        out
    }
}

/// Serves `GET /metrics` with what `render` returns on `listener` until
/// `shutdown`: the HTTP listener of a node without the broker role.
pub async fn serve_rendered(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    shutdown: CancellationToken,
) {
    let bound: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?bound, "HTTP listener serving /metrics");
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move {
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    render(),
                )
            }
        }),
    );
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "the HTTP listener failed");
    }
}

/// The process's CPU time and resident memory, read when scraped; the
/// same series on brokers and on dedicated controllers.
struct ProcessGauges {
    cpu_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    resident_bytes: Gauge,
}

impl ProcessGauges {
    fn register(registry: &mut Registry) -> ProcessGauges {
        let gauges = ProcessGauges {
            cpu_seconds: Gauge::default(),
            resident_bytes: Gauge::default(),
        };
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time of the process in seconds",
            gauges.cpu_seconds.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process in bytes",
            gauges.resident_bytes.clone(),
        );
        gauges
    }

    fn update(&self) {
        if let Some((cpu, rss)) = process_usage() {
            self.cpu_seconds.set(cpu);
            self.resident_bytes.set(rss);
        }
    }
}

/// (CPU seconds, resident bytes) of this process, from `/proc/self`.
fn process_usage() -> Option<(f64, i64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // /proc counts in USER_HZ, which is 100 on Linux.
    let cpu = ticks / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: i64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((cpu, rss_kib * 1024))
}

/// How many partition leader elections lie between two images: the sum of
/// the partitions' leader epoch increases. Every change of leader (to or
/// from none too) bumps the epoch, so elections between two images this
/// node applied are counted even when it saw only the second. Partitions
/// that are new (or of a topic deleted and created again) count nothing.
pub fn leader_elections(before: &MetadataImage, after: &MetadataImage) -> u64 {
    let mut elections = 0u64;
    for (name, topic) in &after.topics {
        let Some(earlier) = before.topics.get(name).filter(|t| t.id == topic.id) else {
            continue;
        };
        for (p, q) in earlier.partitions.iter().zip(&topic.partitions) {
            let bumps = i64::from(q.leader_epoch) - i64::from(p.leader_epoch);
            elections += u64::try_from(bumps).unwrap_or(0);
        }
    }
    elections
}

/// How many of the elections between two images were unclean: a
/// partition's leader changed to a replica outside the ISR the earlier
/// image had (possible only with `unclean.leader.election.enable`).
pub fn unclean_leader_elections(before: &MetadataImage, after: &MetadataImage) -> u64 {
    let mut elections = 0u64;
    for (name, topic) in &after.topics {
        let Some(earlier) = before.topics.get(name).filter(|t| t.id == topic.id) else {
            continue;
        };
        for (p, q) in earlier.partitions.iter().zip(&topic.partitions) {
            if q.leader >= 0 && q.leader != p.leader && !p.isr.contains(&q.leader) {
                elections += 1;
            }
        }
    }
    elections
}

/// Whether this node hosts a voter of the controller quorum: it is among
/// `controller.quorum.voters` and `process.roles` names `controller`
/// (unset means `broker,controller`, as `kraftwerk server` reads it).
fn hosts_controller(config: &BrokerConfig, client: &crate::remote::ControllerClient) -> bool {
    let controller_role = config
        .raw
        .get("process.roles")
        .is_none_or(|roles| roles.split(',').any(|r| r.trim() == "controller"));
    controller_role && u64::try_from(config.node_id).is_ok_and(|id| client.is_voter(id))
}

/// The metadata quorum as this node sees it. A node that hosts a
/// controller asks that controller (a local call, at most
/// [`LOCAL_QUORUM_STATUS_TIMEOUT`]); a broker reports the leader and epoch
/// its metadata fetches learned, and its image's offset as the high
/// watermark.
pub async fn quorum_view(state: &BrokerState) -> QuorumView {
    let image = state.image.load();
    let me = u64::try_from(state.config.node_id).ok();
    let client = &state.quorum;
    let broker_view = QuorumView {
        leader: client.active_controller(),
        epoch: client.leader_epoch(),
        high_watermark: (image.version > 0).then_some(image.version),
        controller: None,
    };
    let Some(me) = me.filter(|_| hosts_controller(&state.config, client)) else {
        return broker_view;
    };
    let s = match client
        .quorum_status_of(me, LOCAL_QUORUM_STATUS_TIMEOUT)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "this node's controller did not describe the quorum; reporting the broker's view");
            return broker_view;
        }
    };
    let leading = s.leader_id == Some(me);
    let voter_lag = match (leading, s.last_log_index) {
        (true, Some(end)) => s
            .voters
            .iter()
            .filter_map(|v| Some((v.node_id, end.saturating_sub(v.matched_index?))))
            .collect(),
        _ => Vec::new(),
    };
    QuorumView {
        leader: s.leader_id,
        epoch: Some(s.term),
        high_watermark: s.commit_index,
        controller: Some(ControllerView {
            state: Some(s.state).filter(|st| !st.is_empty()),
            log_end_offset: s.last_log_index,
            voter_lag,
        }),
    }
}

/// High watermarks by (topic, partition), of partitions this node holds
/// no replica of, as their leaders answered for one scrape.
pub type RemoteHighWatermarks = HashMap<(String, i32), i64>;

/// The high watermarks of the partitions in the committed offsets of the
/// groups coordinated here that have no replica on this node, asked from
/// their leaders (`Replication.HighWatermarks`, Kafka's ListOffsets for
/// the latest offset): one request per leader, all at once, each at most
/// [`crate::stats::PEER_TIMEOUT`] (the limit `/api/v1/stats` gives other
/// brokers), so a scrape never waits longer for them. Partitions without a
/// live leader, or whose leader failed or was late, are left out.
pub async fn remote_high_watermarks(state: &BrokerState) -> RemoteHighWatermarks {
    let mut wanted: BTreeSet<(String, i32)> = BTreeSet::new();
    for group in state.groups.all_groups() {
        let g = group.lock();
        for (topic, partition) in g.offsets.keys() {
            if state.replicas.get(topic, *partition).is_none() {
                wanted.insert((topic.clone(), *partition));
            }
        }
    }
    let mut found = RemoteHighWatermarks::new();
    if wanted.is_empty() {
        return found;
    }
    let image = state.image.load();
    let mut by_leader: BTreeMap<i32, Vec<pb::TopicPartition>> = BTreeMap::new();
    for (topic, partition) in wanted {
        let Some(leader) = image
            .partition(&topic, partition)
            .map(|p| p.leader)
            .filter(|l| *l >= 0 && *l != state.config.node_id)
        else {
            continue;
        };
        by_leader
            .entry(leader)
            .or_default()
            .push(pb::TopicPartition { topic, partition });
    }
    // At most one request per broker of the image; dropped (and so
    // aborted) with the scrape.
    let mut asks = JoinSet::new();
    for (leader, partitions) in by_leader {
        let Some(endpoint) = image
            .brokers
            .get(&leader)
            .filter(|b| !b.fenced)
            .and_then(|b| b.replication_endpoint.clone())
        else {
            continue;
        };
        let Ok(mut client) = state.peer_clients.client(&endpoint) else {
            continue;
        };
        let request = pb::HighWatermarksRequest { partitions };
        asks.spawn(async move {
            let answer =
                tokio::time::timeout(crate::stats::PEER_TIMEOUT, client.high_watermarks(request))
                    .await;
            (leader, endpoint, answer)
        });
    }
    while let Some(joined) = asks.join_next().await {
        let Ok((leader, endpoint, answer)) = joined else {
            continue;
        };
        match answer {
            Ok(Ok(response)) => {
                for p in response.into_inner().partitions {
                    if p.error_code == 0 {
                        found.insert((p.topic, p.partition), p.high_watermark);
                    }
                }
            }
            Ok(Err(status)) => {
                tracing::debug!(leader, %endpoint, %status, "a leader did not tell its high watermarks; its partitions' lag is left out");
                state.peer_clients.forget(&endpoint);
            }
            Err(_) => {
                tracing::debug!(leader, %endpoint, "a leader did not tell its high watermarks in time; its partitions' lag is left out");
            }
        }
    }
    found
}

/// Serves `Replication.HighWatermarks`: the high watermark of each
/// partition this broker leads; NOT_LEADER_OR_FOLLOWER for the others,
/// OFFSET_NOT_AVAILABLE while a new leader's high watermark is not known
/// yet (as ListOffsets answers then).
pub fn serve_high_watermarks(
    state: &BrokerState,
    request: pb::HighWatermarksRequest,
) -> pb::HighWatermarksResponse {
    let partitions = request
        .partitions
        .into_iter()
        .map(|tp| {
            let (error_code, high_watermark) = match state.replicas.get(&tp.topic, tp.partition) {
                Some(p) if !p.replication.is_leader() => (ErrorCode::NOT_LEADER_OR_FOLLOWER, -1),
                Some(p) if p.high_watermark_unknown() => (ErrorCode::OFFSET_NOT_AVAILABLE, -1),
                Some(p) => (ErrorCode::NONE, p.high_watermark()),
                None => (ErrorCode::NOT_LEADER_OR_FOLLOWER, -1),
            };
            pb::PartitionHighWatermark {
                topic: tp.topic,
                partition: tp.partition,
                error_code: i32::from(error_code.code()),
                high_watermark,
            }
        })
        .collect();
    pb::HighWatermarksResponse { partitions }
}

async fn metrics(State(state): State<Arc<BrokerState>>) -> impl IntoResponse {
    // Both wait on other nodes, each within its own limit.
    let (quorum, remote) = tokio::join!(quorum_view(&state), remote_high_watermarks(&state));
    state.metrics.set_quorum(quorum);
    let body = state.metrics.render(&state, &remote);
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Binds the HTTP listener (`kraftwerk.http.listener`) and says where
/// other nodes reach it. `None` when it is turned off (empty) or cannot be
/// bound; that is logged, and the broker keeps serving Kafka without it.
pub async fn bind(config: &BrokerConfig) -> Option<(TcpListener, String)> {
    let addr = config
        .value_of(HTTP_LISTENER_KEY)
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())?;
    let bound = match TcpListener::bind(&addr).await {
        Ok(l) => l.local_addr().map(|local| (l, local)),
        Err(e) => Err(e),
    };
    match bound {
        Ok((listener, local)) => {
            let endpoint = advertised_http_endpoint(&addr, local.port(), config);
            Some((listener, endpoint))
        }
        Err(e) => {
            tracing::error!(%addr, error = %e, "the HTTP listener ({HTTP_LISTENER_KEY}) could not be bound; /metrics is not served");
            None
        }
    }
}

/// `host:port` where other nodes reach an HTTP listener configured as
/// `addr` and bound on `port`: a wildcard host (`0.0.0.0`, `::`, none)
/// is replaced by the host of the node's first advertised listener.
fn advertised_http_endpoint(addr: &str, port: u16, config: &BrokerConfig) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = match host {
        "" | "0.0.0.0" | "::" => crate::listeners::advertised_endpoints(config)
            .into_iter()
            .next()
            .map_or_else(|| "127.0.0.1".to_string(), |e| e.host),
        h => h.to_string(),
    };
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Serves `GET /metrics` and `GET /api/v1/stats` on `listener`, and
/// `routes` beside them, until `shutdown`.
pub async fn serve(
    state: Arc<BrokerState>,
    listener: TcpListener,
    routes: Option<Router>,
    shutdown: CancellationToken,
) {
    let bound: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(
        ?bound,
        endpoint = state.http_endpoint.as_deref(),
        api = routes.is_some(),
        "HTTP listener serving /metrics and /api/v1/stats"
    );
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state.clone())
        .merge(crate::stats::router(state));
    if let Some(routes) = routes {
        app = app.merge(routes);
    }
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "the HTTP listener failed");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kraftwerk_metadata::{PartitionRecord, TopicRecord};
    use kraftwerk_types::TopicId;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BrokerConfig {
        let raw: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BrokerConfig::from_map(raw).expect("valid config")
    }

    #[test]
    fn the_http_endpoint_names_a_host_other_nodes_reach() {
        let c = config(&[
            ("listeners", "PLAINTEXT://0.0.0.0:9092"),
            ("advertised.listeners", "PLAINTEXT://kafka-1:9092"),
        ]);
        for (addr, port, expected) in [
            ("0.0.0.0:9080", 9080, "kafka-1:9080"),
            ("[::]:0", 41234, "kafka-1:41234"),
            (":9080", 9080, "kafka-1:9080"),
            ("10.0.0.5:9080", 9080, "10.0.0.5:9080"),
            ("127.0.0.1:0", 40000, "127.0.0.1:40000"),
            ("[::1]:9080", 9080, "[::1]:9080"),
        ] {
            assert_eq!(advertised_http_endpoint(addr, port, &c), expected, "{addr}");
        }
        let unadvertised = config(&[("listeners", "PLAINTEXT://0.0.0.0:9092")]);
        assert_eq!(
            advertised_http_endpoint("0.0.0.0:9080", 9080, &unadvertised),
            "127.0.0.1:9080"
        );
    }

    fn image(leaders: &[(i32, i32)], topic_id: TopicId) -> MetadataImage {
        let partitions = leaders
            .iter()
            .enumerate()
            .map(|(i, (leader, leader_epoch))| PartitionRecord {
                partition: i as i32,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                leader: *leader,
                leader_epoch: *leader_epoch,
                partition_epoch: *leader_epoch,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
                offline_replicas: Vec::new(),
            })
            .collect();
        let mut image = MetadataImage::default();
        image.topics.insert(
            "t".into(),
            TopicRecord {
                name: "t".into(),
                id: topic_id,
                partitions,
                configs: BTreeMap::new(),
            },
        );
        image.reindex();
        image
    }

    #[test]
    fn leader_elections_are_counted_from_leader_epochs() {
        let id = TopicId::random();
        let before = image(&[(1, 0), (2, 0)], id);
        for (after, expected, case) in [
            (vec![(1, 0), (2, 0)], 0, "nothing changed"),
            (vec![(2, 1), (2, 0)], 1, "one leader moved"),
            (vec![(-1, 1), (2, 0)], 1, "a partition went offline"),
            (
                vec![(3, 2), (3, 1)],
                3,
                "two elections of one partition between two images",
            ),
            (
                vec![(1, 0), (2, 0), (3, 0)],
                0,
                "a new partition is no election",
            ),
        ] {
            assert_eq!(
                leader_elections(&before, &image(&after, id)),
                expected,
                "{case}"
            );
        }
        let recreated = image(&[(2, 0), (3, 4)], TopicId::random());
        assert_eq!(
            leader_elections(&before, &recreated),
            0,
            "a topic created again"
        );
    }

    #[test]
    fn unclean_elections_are_leaders_from_outside_the_earlier_isr() {
        let id = TopicId::random();
        // image() gives each partition ISR = replicas = [1, 2, 3]; narrow one.
        let mut before = image(&[(1, 0), (2, 0)], id);
        before.topics.get_mut("t").expect("topic").partitions[0].isr = vec![1];
        for (after, expected, case) in [
            (vec![(1, 0), (2, 0)], 0, "nothing changed"),
            (vec![(2, 1), (2, 0)], 1, "a leader from outside the ISR"),
            (vec![(-1, 1), (3, 1)], 0, "offline, and a clean move"),
            (vec![(1, 1), (2, 0)], 0, "the same leader again"),
        ] {
            assert_eq!(
                unclean_leader_elections(&before, &image(&after, id)),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn scraped_values_export_quorum_state_only_where_known() {
        let metrics = BrokerMetrics::new();
        metrics.leaders_elected(2);
        metrics.unclean_leaders_elected(1);
        metrics.set_quorum(QuorumView {
            leader: Some(2),
            epoch: None,
            high_watermark: Some(17),
            controller: None,
        });
        let mut broker = String::new();
        prometheus_client::encoding::text::encode(&mut broker, &metrics.registry).expect("encodes");
        for line in [
            "kafka_controller_controllerstats_leaderelectionrateandtimems_count 2",
            "kafka_controller_controllerstats_uncleanleaderelectionspersec_total 1",
            "kafka_server_raftmetrics_current_leader 2",
            "kafka_server_raftmetrics_current_epoch -1",
            "kafka_server_raftmetrics_high_watermark 17",
        ] {
            assert!(broker.lines().any(|l| l == line), "{line} in\n{broker}");
        }
        assert!(!broker.contains("raftmetrics_current_state"), "{broker}");
        metrics.set_quorum(QuorumView {
            leader: Some(1),
            epoch: Some(3),
            high_watermark: Some(20),
            controller: Some(ControllerView {
                state: Some("leader".into()),
                log_end_offset: Some(21),
                voter_lag: vec![(1, 0), (2, 4)],
            }),
        });
        let mut controller = String::new();
        prometheus_client::encoding::text::encode(&mut controller, &metrics.registry)
            .expect("encodes");
        for line in [
            "kafka_server_raftmetrics_log_end_offset 21",
            "kafka_server_raftmetrics_current_state{state=\"leader\"} 1",
            "kafka_server_raftmetrics_voter_lag{voter=\"2\"} 4",
        ] {
            assert!(
                controller.lines().any(|l| l == line),
                "{line} in\n{controller}"
            );
        }
    }

    #[test]
    fn topic_totals_follow_the_prometheus_counters() {
        let metrics = BrokerMetrics::new();
        metrics.produced("b", 100, 2);
        metrics.produced("a", 10, 1);
        metrics.produced("b", 50, 1);
        metrics.fetched("b", 70);
        metrics.answered("Produce", Duration::from_millis(1));
        metrics.answered("Fetch", Duration::from_millis(1));
        let totals = metrics.topic_totals();
        assert_eq!(
            totals
                .iter()
                .map(|t| (t.topic.as_str(), t.bytes_in, t.bytes_out, t.messages_in))
                .collect::<Vec<_>>(),
            [("a", 10, 0, 1), ("b", 150, 70, 3)]
        );
        assert_eq!(metrics.requests_total(), 2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).expect("encodes");
        assert!(text
            .lines()
            .any(|l| l == "kafka_server_brokertopicmetrics_bytesinpersec_total{topic=\"b\"} 150"));
    }
}
