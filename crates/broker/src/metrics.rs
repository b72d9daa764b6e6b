//! Prometheus metrics, named as Kafka's JMX exporter names Kafka's own
//! (`kafka_server_brokertopicmetrics_bytesinpersec`, ...), served on the
//! HTTP listener (`kraftwerk.http.listener`) at `GET /metrics` in the
//! OpenMetrics text format.
//!
//! The hot path only adds to per-topic and per-API counters (one map
//! lookup per topic per request, never per record); everything that is
//! state rather than a count (under-replicated partitions, log sizes, the
//! active controller, process CPU and memory) is read when scraped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
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
    pub request: String,
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
    cpu_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    resident_bytes: Gauge,
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
        let cpu_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let resident_bytes = Gauge::default();
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
            "High watermark minus the committed offset, per group and partition (groups coordinated here, partitions led here)",
            group_lag.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time of the process in seconds",
            cpu_seconds.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process in bytes",
            resident_bytes.clone(),
        );
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
            cpu_seconds,
            resident_bytes,
        }
    }

    /// A producer's batches were appended to `topic`.
    pub fn produced(&self, topic: &str, bytes: u64, records: u64) {
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.bytes_in.get_or_create(&labels).inc_by(bytes);
        self.messages_in.get_or_create(&labels).inc_by(records);
    }

    /// Record batches of `topic` went out in a consumer's fetch answer.
    pub fn fetched(&self, topic: &str, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.bytes_out.get_or_create(&labels).inc_by(bytes);
    }

    /// ISRs of partitions led here shrank or grew in a new image.
    pub fn isr_changed(&self, shrinks: u64, expands: u64) {
        self.isr_shrinks.inc_by(shrinks);
        self.isr_expands.inc_by(expands);
    }

    /// One request of `api` was answered after `elapsed`.
    pub fn answered(&self, api: &str, elapsed: Duration) {
        let labels = RequestLabels {
            request: api.to_string(),
        };
        self.requests.get_or_create(&labels).inc();
        self.request_time_ms
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64() * 1000.0);
    }

    /// Reads the state-like metrics, then encodes everything.
    pub fn render(&self, state: &BrokerState) -> String {
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
                let Some(p) = state.replicas.get(topic, *partition) else {
                    continue;
                };
                if !p.replication.is_leader() || committed.offset < 0 {
                    continue;
                }
                self.group_lag
                    .get_or_create(&LagLabels {
                        consumergroup: g.group_id.clone(),
                        topic: topic.clone(),
                        partition: partition.to_string(),
                    })
                    .set((p.high_watermark() - committed.offset).max(0));
            }
        }
        if let Some((cpu, rss)) = process_usage() {
            self.cpu_seconds.set(cpu);
            self.resident_bytes.set(rss);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        out
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

async fn metrics(State(state): State<Arc<BrokerState>>) -> impl IntoResponse {
    let body = state.metrics.render(&state);
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Serves `GET /metrics` on `addr` until `shutdown`. A listener that
/// cannot be bound is logged and left out: the broker keeps serving Kafka.
pub async fn serve(
    state: Arc<BrokerState>,
    addr: String,
    routes: Option<Router>,
    shutdown: CancellationToken,
) {
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "the HTTP listener ({HTTP_LISTENER_KEY}) could not be bound; /metrics is not served");
            return;
        }
    };
    let bound: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(
        ?bound,
        api = routes.is_some(),
        "HTTP listener serving /metrics"
    );
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
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
