//! Configuration with Kafka's key names and Kafka's defaults.
//!
//! Topic-level keys (`retention.ms`, `segment.bytes`, ...) each have a
//! broker-level default key (`log.retention.ms`, `log.segment.bytes`, ...),
//! exactly as in Kafka. [`TOPIC_CONFIGS`] is the one table that relates them;
//! parsing, validation and DescribeConfigs all read from it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown config key '{0}'")]
    UnknownKey(String),
    #[error("invalid value '{value}' for '{key}': {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("line {line}: expected key=value, found '{text}'")]
    Syntax { line: usize, text: String },
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// How a topic's old data is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let mut policy = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                _ => return None,
            }
        }
        Some(policy)
    }
}

/// Which timestamp a batch carries once stored (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// A fraction in `[0, 1]`, such as `min.cleanable.dirty.ratio`. Never NaN,
/// so configs holding one stay `Eq`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Ratio(f64);

impl Eq for Ratio {}

impl Ratio {
    /// The ratio `value`, if it is a number in `[0, 1]`.
    pub fn new(value: f64) -> Option<Ratio> {
        (0.0..=1.0).contains(&value).then_some(Ratio(value))
    }

    pub fn parse(value: &str) -> Option<Ratio> {
        value.trim().parse().ok().and_then(Ratio::new)
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// One topic-level config: its key, the broker key that sets its default,
/// Kafka's default value, and how to check a value.
pub struct TopicConfigDef {
    pub key: &'static str,
    pub broker_key: &'static str,
    pub default: &'static str,
    pub kind: ValueKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A signed 64-bit integer at least `min`.
    Long {
        min: i64,
    },
    /// A signed 32-bit integer at least `min`.
    Int {
        min: i32,
    },
    Boolean,
    CleanupPolicy,
    TimestampType,
    CompressionType,
    /// A fraction in `[0, 1]` (Kafka's DOUBLE configs).
    Ratio,
}

impl ValueKind {
    fn check(self, key: &str, value: &str) -> Result<(), ConfigError> {
        match self {
            ValueKind::Ratio => {
                if Ratio::parse(value).is_none() {
                    return Err(invalid(key, value, "must be a number between 0 and 1"));
                }
            }
            ValueKind::Long { min } => {
                let v: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(key, value, "not a number"))?;
                if v < min {
                    return Err(invalid(key, value, format!("must be at least {min}")));
                }
            }
            ValueKind::Int { min } => {
                let v: i32 = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(key, value, "not a 32-bit number"))?;
                if v < min {
                    return Err(invalid(key, value, format!("must be at least {min}")));
                }
            }
            ValueKind::Boolean => {
                if !matches!(value.trim(), "true" | "false") {
                    return Err(invalid(key, value, "must be true or false"));
                }
            }
            ValueKind::CleanupPolicy => {
                if CleanupPolicy::parse(value).is_none() {
                    return Err(invalid(
                        key,
                        value,
                        "must be delete, compact or compact,delete",
                    ));
                }
            }
            ValueKind::TimestampType => {
                if !matches!(value.trim(), "CreateTime" | "LogAppendTime") {
                    return Err(invalid(key, value, "must be CreateTime or LogAppendTime"));
                }
            }
            ValueKind::CompressionType => {
                if !matches!(
                    value.trim(),
                    "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd"
                ) {
                    return Err(invalid(
                        key,
                        value,
                        "must be producer, uncompressed, gzip, snappy, lz4 or zstd",
                    ));
                }
            }
        }
        Ok(())
    }
}

const LONG_MAX: &str = "9223372036854775807";

/// The broker keys that set a topic config's default, most specific first,
/// each with the factor that turns its unit into the topic config's: Kafka
/// reads `log.retention.ms`, else `log.retention.minutes`, else
/// `log.retention.hours` for `retention.ms`, and likewise for `segment.ms`.
pub fn broker_synonyms(def: &TopicConfigDef) -> Vec<(&'static str, i64)> {
    match def.key {
        "retention.ms" => vec![
            ("log.retention.ms", 1),
            ("log.retention.minutes", 60_000),
            ("log.retention.hours", 3_600_000),
        ],
        "segment.ms" => vec![("log.roll.ms", 1), ("log.roll.hours", 3_600_000)],
        _ => vec![(def.broker_key, 1)],
    }
}

/// The broker's default for a topic config, from the first of its broker
/// synonyms that is set: `(broker key, value in the topic config's unit)`.
/// A value that does not parse is passed on as written.
pub fn broker_default(
    def: &TopicConfigDef,
    broker: &BTreeMap<String, String>,
) -> Option<(&'static str, String)> {
    broker_synonyms(def).into_iter().find_map(|(key, factor)| {
        let raw = broker.get(key)?;
        if factor == 1 {
            return Some((key, raw.clone()));
        }
        let value = raw
            .trim()
            .parse::<i64>()
            .map(|v| v.saturating_mul(factor).to_string())
            .unwrap_or_else(|_| raw.clone());
        Some((key, value))
    })
}

/// Whether Kafka gives the broker key behind this topic config a default
/// of its own (`log.retention.ms`, `log.roll.ms` and
/// `log.flush.interval.ms` have none: their hours or Long.MAX stand in).
pub fn broker_key_has_default(def: &TopicConfigDef) -> bool {
    !matches!(def.key, "retention.ms" | "segment.ms" | "flush.ms")
}

/// Every topic-level config Kraftwerk knows, with Kafka's defaults.
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        key: "cleanup.policy",
        broker_key: "log.cleanup.policy",
        default: "delete",
        kind: ValueKind::CleanupPolicy,
    },
    TopicConfigDef {
        key: "compression.type",
        broker_key: "compression.type",
        default: "producer",
        kind: ValueKind::CompressionType,
    },
    TopicConfigDef {
        key: "delete.retention.ms",
        broker_key: "log.cleaner.delete.retention.ms",
        default: "86400000",
        kind: ValueKind::Long { min: 0 },
    },
    TopicConfigDef {
        key: "flush.messages",
        broker_key: "log.flush.interval.messages",
        default: LONG_MAX,
        kind: ValueKind::Long { min: 1 },
    },
    TopicConfigDef {
        key: "flush.ms",
        broker_key: "log.flush.interval.ms",
        default: LONG_MAX,
        kind: ValueKind::Long { min: 0 },
    },
    TopicConfigDef {
        key: "index.interval.bytes",
        broker_key: "log.index.interval.bytes",
        default: "4096",
        kind: ValueKind::Int { min: 0 },
    },
    TopicConfigDef {
        key: "max.message.bytes",
        broker_key: "message.max.bytes",
        default: "1048588",
        kind: ValueKind::Int { min: 0 },
    },
    TopicConfigDef {
        key: "max.compaction.lag.ms",
        broker_key: "log.cleaner.max.compaction.lag.ms",
        default: LONG_MAX,
        kind: ValueKind::Long { min: 1 },
    },
    TopicConfigDef {
        key: "message.timestamp.type",
        broker_key: "log.message.timestamp.type",
        default: "CreateTime",
        kind: ValueKind::TimestampType,
    },
    TopicConfigDef {
        key: "min.cleanable.dirty.ratio",
        broker_key: "log.cleaner.min.cleanable.ratio",
        default: "0.5",
        kind: ValueKind::Ratio,
    },
    TopicConfigDef {
        key: "min.compaction.lag.ms",
        broker_key: "log.cleaner.min.compaction.lag.ms",
        default: "0",
        kind: ValueKind::Long { min: 0 },
    },
    TopicConfigDef {
        key: "min.insync.replicas",
        broker_key: "min.insync.replicas",
        default: "1",
        kind: ValueKind::Int { min: 1 },
    },
    TopicConfigDef {
        key: "retention.bytes",
        broker_key: "log.retention.bytes",
        default: "-1",
        kind: ValueKind::Long { min: -1 },
    },
    TopicConfigDef {
        key: "retention.ms",
        broker_key: "log.retention.ms",
        default: "604800000",
        kind: ValueKind::Long { min: -1 },
    },
    TopicConfigDef {
        key: "segment.bytes",
        broker_key: "log.segment.bytes",
        default: "1073741824",
        kind: ValueKind::Int { min: 14 },
    },
    TopicConfigDef {
        key: "segment.index.bytes",
        broker_key: "log.index.size.max.bytes",
        default: "10485760",
        kind: ValueKind::Int { min: 4 },
    },
    TopicConfigDef {
        key: "segment.ms",
        broker_key: "log.roll.ms",
        default: "604800000",
        kind: ValueKind::Long { min: 1 },
    },
    TopicConfigDef {
        key: "unclean.leader.election.enable",
        broker_key: "unclean.leader.election.enable",
        default: "false",
        kind: ValueKind::Boolean,
    },
];

pub fn topic_config_def(key: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.key == key)
}

/// Checks a set of topic-level overrides (CreateTopics, `--config k=v`).
pub fn validate_topic_configs<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), ConfigError> {
    for (key, value) in entries {
        let def = topic_config_def(key).ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
        def.kind.check(key, value)?;
    }
    Ok(())
}

/// The resolved log settings of one partition: topic overrides over broker defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub index_interval_bytes: u64,
    pub segment_index_bytes: u64,
    pub max_message_bytes: usize,
    pub timestamp_type: TimestampType,
    pub cleanup_policy: CleanupPolicy,
    pub delete_retention_ms: i64,
    /// Compaction skips a log whose never-cleaned share of its cleanable
    /// bytes is below this (unless `max_compaction_lag_ms` has passed).
    pub min_cleanable_dirty_ratio: Ratio,
    /// A segment is cleaned only once all its records are this old.
    pub min_compaction_lag_ms: i64,
    /// A record stays uncompacted at most this long (ignoring the dirty ratio).
    pub max_compaction_lag_ms: i64,
    pub min_insync_replicas: i32,
    pub unclean_leader_election_enable: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig::resolve(&BTreeMap::new(), &BTreeMap::new())
    }
}

impl LogConfig {
    /// Resolves every topic-level key: the topic's override, else the
    /// broker's `log.*` default, else Kafka's default. Values are assumed
    /// validated; an unparsable one falls back to Kafka's default.
    pub fn resolve(
        topic: &BTreeMap<String, String>,
        broker: &BTreeMap<String, String>,
    ) -> LogConfig {
        let get = |key: &str| -> String {
            if let Some(v) = topic.get(key) {
                return v.clone();
            }
            match topic_config_def(key) {
                Some(d) => broker_default(d, broker)
                    .map(|(_, v)| v)
                    .unwrap_or_else(|| d.default.to_string()),
                None => String::new(),
            }
        };
        let long = |key: &str| -> i64 {
            get(key).trim().parse().unwrap_or_else(|_| {
                topic_config_def(key)
                    .and_then(|d| d.default.parse().ok())
                    .unwrap_or(0)
            })
        };
        let ts = if get("message.timestamp.type").trim() == "LogAppendTime" {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        };
        LogConfig {
            segment_bytes: long("segment.bytes").max(14) as u64,
            segment_ms: long("segment.ms"),
            retention_ms: long("retention.ms"),
            retention_bytes: long("retention.bytes"),
            flush_messages: long("flush.messages"),
            flush_ms: long("flush.ms"),
            index_interval_bytes: long("index.interval.bytes").max(0) as u64,
            segment_index_bytes: long("segment.index.bytes").max(4) as u64,
            max_message_bytes: long("max.message.bytes").max(0) as usize,
            timestamp_type: ts,
            cleanup_policy: CleanupPolicy::parse(&get("cleanup.policy")).unwrap_or(CleanupPolicy {
                delete: true,
                compact: false,
            }),
            delete_retention_ms: long("delete.retention.ms"),
            min_cleanable_dirty_ratio: Ratio::parse(&get("min.cleanable.dirty.ratio"))
                .unwrap_or(Ratio(0.5)),
            min_compaction_lag_ms: long("min.compaction.lag.ms").max(0),
            max_compaction_lag_ms: long("max.compaction.lag.ms").max(1),
            min_insync_replicas: long("min.insync.replicas") as i32,
            unclean_leader_election_enable: get("unclean.leader.election.enable").trim() == "true",
        }
    }
}

/// A listener as written in `listeners=NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Listener {
    pub fn parse_list(key: &str, value: &str) -> Result<Vec<Listener>, ConfigError> {
        let mut out = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, rest) = item
                .split_once("://")
                .ok_or_else(|| invalid(key, item, "expected NAME://host:port"))?;
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| invalid(key, item, "expected NAME://host:port"))?;
            let port: u16 = port.parse().map_err(|_| invalid(key, item, "bad port"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            out.push(Listener {
                name: name.to_string(),
                host,
                port,
            });
        }
        Ok(out)
    }

    pub fn bind_addr(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A broker's settings, read from Kafka-style `server.properties` keys.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub listeners: Vec<Listener>,
    /// Each listener's security protocol, by name.
    pub listener_protocols: BTreeMap<String, SecurityProtocol>,
    pub advertised_listeners: Vec<Listener>,
    pub log_dirs: Vec<PathBuf>,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub socket_request_max_bytes: usize,
    /// Kafka connections this broker keeps open at once, over all its
    /// listeners (`max.connections`).
    pub max_connections: usize,
    /// Kafka connections from one address (`max.connections.per.ip`).
    pub max_connections_per_ip: usize,
    /// Per-address exceptions to `max.connections.per.ip`
    /// (`max.connections.per.ip.overrides`, `host:count,...`).
    pub max_connections_per_ip_overrides: BTreeMap<IpAddr, usize>,
    pub log_retention_check_interval_ms: u64,
    /// Whether compacted topics are cleaned (`log.cleaner.enable`).
    pub log_cleaner_enable: bool,
    /// How often the cleaner looks for logs to compact (`log.cleaner.backoff.ms`).
    pub log_cleaner_backoff_ms: u64,
    pub cluster_id: Option<String>,
    /// Every key as given, for the `log.*` defaults and DescribeConfigs.
    pub raw: BTreeMap<String, String>,
}

/// Broker keys Kraftwerk reads, with Kafka's defaults (the single-node
/// defaults differ from Kafka only where noted in `docs/configuration.md`).
pub static BROKER_CONFIGS: &[(&str, &str)] = &[
    ("node.id", "1"),
    ("process.roles", "broker,controller"),
    ("listeners", "PLAINTEXT://127.0.0.1:9092"),
    ("advertised.listeners", ""),
    ("log.dirs", "./data"),
    ("num.partitions", "1"),
    ("default.replication.factor", "1"),
    ("auto.create.topics.enable", "true"),
    ("socket.request.max.bytes", "104857600"),
    ("max.connections", "2147483647"),
    ("max.connections.per.ip", "2147483647"),
    ("max.connections.per.ip.overrides", ""),
    ("listener.security.protocol.map", ""),
    ("ssl.keystore.type", "PEM"),
    ("ssl.keystore.location", ""),
    ("ssl.keystore.certificate.chain", ""),
    ("ssl.keystore.key", ""),
    ("ssl.key.password", ""),
    ("ssl.truststore.type", "PEM"),
    ("ssl.truststore.location", ""),
    ("ssl.truststore.certificates", ""),
    ("ssl.client.auth", "none"),
    ("ssl.enabled.protocols", "TLSv1.2,TLSv1.3"),
    ("ssl.endpoint.identification.algorithm", "https"),
    ("ssl.principal.mapping.rules", "DEFAULT"),
    ("kraftwerk.ssl.reload.interval.ms", "5000"),
    ("sasl.enabled.mechanisms", "GSSAPI"),
    ("sasl.jaas.config", ""),
    ("connections.max.reauth.ms", "0"),
    ("connection.failed.authentication.delay.ms", "100"),
    ("authorizer.class.name", ""),
    ("super.users", ""),
    ("allow.everyone.if.no.acl.found", "false"),
    ("quota.window.num", "11"),
    ("quota.window.size.seconds", "1"),
    ("kraftwerk.http.listener", "127.0.0.1:9080"),
    ("kraftwerk.http.api.enable", "true"),
    ("log.retention.hours", "168"),
    ("log.roll.hours", "168"),
    ("log.retention.check.interval.ms", "300000"),
    ("log.cleaner.enable", "true"),
    ("log.cleaner.backoff.ms", "15000"),
    ("cluster.id", ""),
    ("offsets.topic.num.partitions", "50"),
    ("offsets.topic.replication.factor", "3"),
    ("offsets.topic.segment.bytes", "104857600"),
    ("offsets.retention.minutes", "10080"),
    ("offsets.retention.check.interval.ms", "600000"),
    ("offsets.commit.timeout.ms", "5000"),
    ("group.initial.rebalance.delay.ms", "3000"),
    ("transaction.state.log.num.partitions", "50"),
    ("transaction.state.log.replication.factor", "3"),
    ("transaction.state.log.min.isr", "2"),
    ("transaction.state.log.segment.bytes", "104857600"),
    ("transaction.max.timeout.ms", "900000"),
    ("transactional.id.expiration.ms", "604800000"),
    (
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "10000",
    ),
    (
        "transaction.remove.expired.transaction.cleanup.interval.ms",
        "3600000",
    ),
    ("group.min.session.timeout.ms", "6000"),
    ("group.max.session.timeout.ms", "1800000"),
    ("controller.quorum.voters", ""),
    ("controller.listener.names", "CONTROLLER"),
    ("broker.session.timeout.ms", "9000"),
    ("broker.heartbeat.interval.ms", "2000"),
    ("broker.rack", ""),
    ("auto.leader.rebalance.enable", "true"),
    ("leader.imbalance.check.interval.seconds", "300"),
    ("replica.lag.time.max.ms", "30000"),
    ("replica.fetch.wait.max.ms", "500"),
    ("replica.fetch.max.bytes", "1048576"),
    ("replica.fetch.min.bytes", "1"),
    ("replica.high.watermark.checkpoint.interval.ms", "5000"),
];

/// The types and lower bounds of the broker keys above that are numbers or
/// booleans, as Kafka's `KafkaConfig` defines them: every value given is
/// checked once, at startup, so a typo stops the broker with the key's name
/// instead of falling back to a default unseen.
static BROKER_VALUE_KINDS: &[(&str, ValueKind)] = &[
    ("connections.max.reauth.ms", ValueKind::Long { min: 0 }),
    (
        "connection.failed.authentication.delay.ms",
        ValueKind::Int { min: 0 },
    ),
    (
        "kraftwerk.ssl.reload.interval.ms",
        ValueKind::Long { min: 0 },
    ),
    ("allow.everyone.if.no.acl.found", ValueKind::Boolean),
    ("quota.window.num", ValueKind::Int { min: 1 }),
    ("quota.window.size.seconds", ValueKind::Int { min: 1 }),
    ("node.id", ValueKind::Int { min: 0 }),
    ("num.partitions", ValueKind::Int { min: 1 }),
    ("default.replication.factor", ValueKind::Int { min: 1 }),
    ("auto.create.topics.enable", ValueKind::Boolean),
    ("socket.request.max.bytes", ValueKind::Int { min: 1 }),
    ("max.connections", ValueKind::Int { min: 0 }),
    ("max.connections.per.ip", ValueKind::Int { min: 0 }),
    ("log.retention.hours", ValueKind::Int { min: i32::MIN }),
    ("log.roll.hours", ValueKind::Int { min: 1 }),
    (
        "log.retention.check.interval.ms",
        ValueKind::Long { min: 1 },
    ),
    ("log.cleaner.enable", ValueKind::Boolean),
    ("log.cleaner.backoff.ms", ValueKind::Long { min: 0 }),
    ("offsets.topic.num.partitions", ValueKind::Int { min: 1 }),
    (
        "offsets.topic.replication.factor",
        ValueKind::Int { min: 1 },
    ),
    ("offsets.topic.segment.bytes", ValueKind::Int { min: 1 }),
    ("offsets.retention.minutes", ValueKind::Int { min: 1 }),
    (
        "offsets.retention.check.interval.ms",
        ValueKind::Long { min: 1 },
    ),
    ("offsets.commit.timeout.ms", ValueKind::Int { min: 1 }),
    (
        "group.initial.rebalance.delay.ms",
        ValueKind::Int { min: 0 },
    ),
    ("group.min.session.timeout.ms", ValueKind::Int { min: 0 }),
    (
        "transaction.state.log.num.partitions",
        ValueKind::Int { min: 1 },
    ),
    (
        "transaction.state.log.replication.factor",
        ValueKind::Int { min: 1 },
    ),
    ("transaction.state.log.min.isr", ValueKind::Int { min: 1 }),
    (
        "transaction.state.log.segment.bytes",
        ValueKind::Int { min: 1 },
    ),
    ("transaction.max.timeout.ms", ValueKind::Int { min: 1 }),
    ("transactional.id.expiration.ms", ValueKind::Int { min: 1 }),
    (
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        ValueKind::Int { min: 1 },
    ),
    (
        "transaction.remove.expired.transaction.cleanup.interval.ms",
        ValueKind::Int { min: 1 },
    ),
    ("group.max.session.timeout.ms", ValueKind::Int { min: 0 }),
    ("broker.session.timeout.ms", ValueKind::Int { min: 1 }),
    ("broker.heartbeat.interval.ms", ValueKind::Int { min: 1 }),
    ("auto.leader.rebalance.enable", ValueKind::Boolean),
    (
        "leader.imbalance.check.interval.seconds",
        ValueKind::Long { min: 1 },
    ),
    ("replica.lag.time.max.ms", ValueKind::Long { min: 1 }),
    ("replica.fetch.wait.max.ms", ValueKind::Int { min: 0 }),
    ("replica.fetch.max.bytes", ValueKind::Int { min: 0 }),
    ("replica.fetch.min.bytes", ValueKind::Int { min: 1 }),
    (
        "replica.high.watermark.checkpoint.interval.ms",
        ValueKind::Long { min: 1 },
    ),
];

impl BrokerConfig {
    /// Parses `server.properties` text: `key=value` lines, `#` comments.
    pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut map = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .or_else(|| line.split_once(':'))
                .ok_or_else(|| ConfigError::Syntax {
                    line: i + 1,
                    text: line.to_string(),
                })?;
            map.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(map)
    }

    pub fn from_map(raw: BTreeMap<String, String>) -> Result<BrokerConfig, ConfigError> {
        let get = |key: &str| -> String {
            raw.get(key)
                .cloned()
                .or_else(|| {
                    BROKER_CONFIGS
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, v)| v.to_string())
                })
                .unwrap_or_default()
        };
        fn num<T: std::str::FromStr>(key: &str, value: String) -> Result<T, ConfigError> {
            value
                .trim()
                .parse()
                .map_err(|_| invalid(key, &value, "not a number"))
        }
        fn boolean(key: &str, value: String) -> Result<bool, ConfigError> {
            match value.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(invalid(key, &value, "must be true or false")),
            }
        }
        let listeners = Listener::parse_list("listeners", &get("listeners"))?;
        if listeners.is_empty() {
            return Err(invalid("listeners", "", "at least one listener is needed"));
        }
        let advertised = match get("advertised.listeners").trim() {
            "" => listeners.clone(),
            v => Listener::parse_list("advertised.listeners", v)?,
        };
        let log_dirs: Vec<PathBuf> = raw
            .get("log.dirs")
            .or_else(|| raw.get("log.dir"))
            .cloned()
            .unwrap_or_else(|| "./data".to_string())
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        if log_dirs.is_empty() {
            return Err(invalid("log.dirs", "", "at least one directory is needed"));
        }
        // Topic-level defaults given at broker level are checked like topic configs.
        for def in TOPIC_CONFIGS {
            if let Some(v) = raw.get(def.broker_key) {
                def.kind.check(def.broker_key, v)?;
            }
        }
        for (key, kind) in BROKER_VALUE_KINDS {
            if let Some(v) = raw.get(*key) {
                kind.check(key, v)?;
            }
        }
        let heartbeat_ms: i64 = num(
            "broker.heartbeat.interval.ms",
            get("broker.heartbeat.interval.ms"),
        )?;
        let session_ms: i64 = num(
            "broker.session.timeout.ms",
            get("broker.session.timeout.ms"),
        )?;
        if heartbeat_ms >= session_ms {
            return Err(invalid(
                "broker.heartbeat.interval.ms",
                &heartbeat_ms.to_string(),
                format!("must be below broker.session.timeout.ms ({session_ms})"),
            ));
        }
        let mut non_kafka: Vec<String> = get("controller.listener.names")
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        non_kafka.push("REPLICATION".to_string());
        let listener_protocols = listener_protocols(
            &listeners,
            &get("listener.security.protocol.map"),
            &non_kafka,
        )?;
        let max_connections_per_ip: usize =
            num("max.connections.per.ip", get("max.connections.per.ip"))?;
        let max_connections_per_ip_overrides =
            parse_connection_overrides(&get("max.connections.per.ip.overrides"))?;
        if max_connections_per_ip == 0 && max_connections_per_ip_overrides.is_empty() {
            return Err(invalid(
                "max.connections.per.ip",
                "0",
                "0 refuses every client unless max.connections.per.ip.overrides names some",
            ));
        }
        let cluster_id = Some(get("cluster.id")).filter(|s| !s.trim().is_empty());
        Ok(BrokerConfig {
            node_id: num("node.id", get("node.id"))?,
            listeners,
            listener_protocols,
            advertised_listeners: advertised,
            log_dirs,
            num_partitions: num("num.partitions", get("num.partitions"))?,
            default_replication_factor: num(
                "default.replication.factor",
                get("default.replication.factor"),
            )?,
            auto_create_topics_enable: boolean(
                "auto.create.topics.enable",
                get("auto.create.topics.enable"),
            )?,
            socket_request_max_bytes: num(
                "socket.request.max.bytes",
                get("socket.request.max.bytes"),
            )?,
            max_connections: num("max.connections", get("max.connections"))?,
            max_connections_per_ip,
            max_connections_per_ip_overrides,
            log_retention_check_interval_ms: num(
                "log.retention.check.interval.ms",
                get("log.retention.check.interval.ms"),
            )?,
            log_cleaner_enable: boolean("log.cleaner.enable", get("log.cleaner.enable"))?,
            log_cleaner_backoff_ms: num("log.cleaner.backoff.ms", get("log.cleaner.backoff.ms"))?,
            cluster_id,
            raw,
        })
    }

    /// The broker-level value of any key, explicit or Kafka's default.
    pub fn value_of(&self, key: &str) -> Option<String> {
        if let Some(v) = self.raw.get(key) {
            return Some(v.clone());
        }
        if let Some(def) = TOPIC_CONFIGS.iter().find(|d| d.broker_key == key) {
            return Some(def.default.to_string());
        }
        BROKER_CONFIGS
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    }

    /// Whether a key holds a secret: DescribeConfigs shows it as
    /// sensitive, without its value, as Kafka does.
    pub fn is_sensitive(key: &str) -> bool {
        key.ends_with("password")
            || key.ends_with("sasl.jaas.config")
            || key.ends_with("ssl.keystore.key")
    }

    /// The security protocol of the listener called `name`.
    pub fn security_protocol(&self, name: &str) -> SecurityProtocol {
        self.listener_protocols
            .get(name)
            .copied()
            .unwrap_or(SecurityProtocol::Plaintext)
    }

    /// A key as Kafka reads it for one listener: the
    /// `listener.name.<listener, lowercased>.<key>` form first, else the
    /// bare key, else Kafka's default.
    pub fn listener_value(&self, listener: &str, key: &str) -> Option<String> {
        let prefixed = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
        self.raw
            .get(&prefixed)
            .cloned()
            .or_else(|| self.value_of(key))
    }

    /// The log settings of a topic with the given overrides.
    pub fn log_config(&self, topic_overrides: &BTreeMap<String, String>) -> LogConfig {
        LogConfig::resolve(topic_overrides, &self.raw)
    }

    pub fn socket_addr_hint(&self) -> Option<SocketAddr> {
        self.listeners
            .first()
            .and_then(|l| l.bind_addr().parse().ok())
    }
}

/// Kafka's security protocols, one per listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        match name.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// Each listener's security protocol: by `listener.security.protocol.map`,
/// else its name when that is a protocol, else PLAINTEXT. Listeners that do
/// not speak Kafka (the controller's, `REPLICATION`) carry gRPC between
/// nodes, in PLAINTEXT or SSL; they get a protocol even when this node does
/// not listen on them, since it dials them. SASL is not spoken there:
/// asking for it stops the broker rather than serving it without the
/// security the operator believes is on.
fn listener_protocols(
    listeners: &[Listener],
    map: &str,
    non_kafka: &[String],
) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
    const KEY: &str = "listener.security.protocol.map";
    let mut mapped = BTreeMap::new();
    for item in map.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, protocol) = item
            .split_once(':')
            .ok_or_else(|| invalid(KEY, item, "expected LISTENER_NAME:PROTOCOL"))?;
        let protocol = SecurityProtocol::parse(protocol).ok_or_else(|| {
            invalid(
                KEY,
                item,
                "the protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
            )
        })?;
        mapped.insert(name.trim().to_string(), protocol);
    }
    let mut out = BTreeMap::new();
    for l in listeners {
        let protocol = mapped
            .get(&l.name)
            .copied()
            .or_else(|| SecurityProtocol::parse(&l.name))
            .unwrap_or(SecurityProtocol::Plaintext);
        out.insert(l.name.clone(), protocol);
    }
    for name in non_kafka {
        let protocol = out
            .get(name)
            .or_else(|| mapped.get(name))
            .copied()
            .unwrap_or(SecurityProtocol::Plaintext);
        if protocol.uses_sasl() {
            return Err(invalid(
                KEY,
                &format!("{name}:{}", protocol.name()),
                format!(
                    "{name} carries gRPC between nodes, which Kraftwerk serves in PLAINTEXT \
                     or SSL (with client certificates); refusing to start rather than serve \
                     it without {}",
                    protocol.name()
                ),
            ));
        }
        out.insert(name.clone(), protocol);
    }
    Ok(out)
}

/// `max.connections.per.ip.overrides`: `host:count` pairs; a host name is
/// resolved once, at startup.
fn parse_connection_overrides(value: &str) -> Result<BTreeMap<IpAddr, usize>, ConfigError> {
    const KEY: &str = "max.connections.per.ip.overrides";
    let mut out = BTreeMap::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (host, count) = item
            .rsplit_once(':')
            .ok_or_else(|| invalid(KEY, item, "expected host:count"))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| invalid(KEY, item, "the count is not a number"))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (host, 0)
                .to_socket_addrs()
                .map_err(|e| invalid(KEY, item, format!("cannot resolve {host}: {e}")))?
                .map(|a| a.ip())
                .collect(),
        };
        for ip in addrs {
            out.insert(ip, count);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(pairs: &[(&str, &str)]) -> Result<BrokerConfig, ConfigError> {
        BrokerConfig::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn listeners_get_their_security_protocol_by_map_or_name() {
        let c = broker(&[
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9093,CLIENT://127.0.0.1:9094,INTERNAL://127.0.0.1:9095",
            ),
            ("listener.security.protocol.map", "CLIENT:sasl_plaintext"),
        ])
        .expect("valid");
        assert_eq!(
            c.security_protocol("PLAINTEXT"),
            SecurityProtocol::Plaintext
        );
        assert_eq!(c.security_protocol("SASL_SSL"), SecurityProtocol::SaslSsl);
        assert_eq!(
            c.security_protocol("CLIENT"),
            SecurityProtocol::SaslPlaintext
        );
        assert_eq!(c.security_protocol("INTERNAL"), SecurityProtocol::Plaintext);
        let err = broker(&[("listener.security.protocol.map", "PLAINTEXT:TLS")])
            .expect_err("unknown protocol");
        assert!(err.to_string().contains("must be PLAINTEXT"), "{err}");
        // gRPC listeners speak PLAINTEXT or SSL, never SASL, and have a
        // protocol when this node only dials them.
        for (listeners, map) in [
            (
                "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
                "CONTROLLER:SASL_SSL",
            ),
            (
                "PLAINTEXT://127.0.0.1:9092,REPLICATION://127.0.0.1:9094",
                "REPLICATION:SASL_PLAINTEXT",
            ),
        ] {
            let err = broker(&[
                ("listeners", listeners),
                ("listener.security.protocol.map", map),
            ])
            .expect_err(listeners);
            assert!(err.to_string().contains("PLAINTEXT or SSL"), "{err}");
        }
        let c = broker(&[
            ("listeners", "PLAINTEXT://127.0.0.1:9092"),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL,REPLICATION:SSL",
            ),
        ])
        .expect("valid");
        assert_eq!(c.security_protocol("CONTROLLER"), SecurityProtocol::Ssl);
        assert_eq!(c.security_protocol("REPLICATION"), SecurityProtocol::Ssl);
    }

    #[test]
    fn listener_prefixed_keys_win_over_bare_ones() {
        let c = broker(&[
            ("listeners", "SASL_SSL://127.0.0.1:9093"),
            ("ssl.client.auth", "requested"),
            ("listener.name.sasl_ssl.ssl.client.auth", "required"),
        ])
        .expect("valid");
        assert_eq!(
            c.listener_value("SASL_SSL", "ssl.client.auth").as_deref(),
            Some("required")
        );
        assert_eq!(
            c.listener_value("OTHER", "ssl.client.auth").as_deref(),
            Some("requested")
        );
    }

    #[test]
    fn bad_broker_values_stop_the_broker_with_the_keys_name() {
        for (key, value) in [
            ("broker.session.timeout.ms", "9s"),
            ("broker.heartbeat.interval.ms", "0"),
            ("num.partitions", "0"),
            ("auto.leader.rebalance.enable", "yes"),
            ("replica.lag.time.max.ms", "-5"),
            ("offsets.topic.replication.factor", "three"),
            ("group.initial.rebalance.delay.ms", "99999999999"),
        ] {
            let err = broker(&[(key, value)]).expect_err(key).to_string();
            assert!(err.contains(key) && err.contains(value), "{err}");
        }
        let err = broker(&[
            ("broker.session.timeout.ms", "2000"),
            ("broker.heartbeat.interval.ms", "2000"),
        ])
        .expect_err("heartbeat not below session")
        .to_string();
        assert!(
            err.contains("must be below broker.session.timeout.ms"),
            "{err}"
        );
        broker(&[
            ("broker.session.timeout.ms", "4000"),
            ("broker.heartbeat.interval.ms", "1000"),
            ("log.retention.hours", "-1"),
        ])
        .expect("valid values");
    }

    #[test]
    fn connection_limits_read_as_kafka_spells_them() {
        let c = broker(&[]).expect("defaults");
        assert_eq!(c.max_connections, i32::MAX as usize);
        assert_eq!(c.max_connections_per_ip, i32::MAX as usize);
        let c = broker(&[
            ("max.connections", "200"),
            ("max.connections.per.ip", "10"),
            ("max.connections.per.ip.overrides", "127.0.0.1:100, [::1]:5"),
        ])
        .expect("limits");
        assert_eq!(c.max_connections, 200);
        assert_eq!(
            c.max_connections_per_ip_overrides
                .get(&"127.0.0.1".parse::<IpAddr>().expect("ip")),
            Some(&100)
        );
        assert_eq!(
            c.max_connections_per_ip_overrides
                .get(&"::1".parse::<IpAddr>().expect("ip")),
            Some(&5)
        );
        assert!(broker(&[("max.connections", "-1")]).is_err());
        assert!(broker(&[("max.connections.per.ip.overrides", "127.0.0.1")]).is_err());
        assert!(broker(&[("max.connections.per.ip", "0")]).is_err());
        broker(&[
            ("max.connections.per.ip", "0"),
            ("max.connections.per.ip.overrides", "127.0.0.1:3"),
        ])
        .expect("0 with overrides");
    }

    #[test]
    fn retention_and_roll_in_hours_or_minutes_as_kafka_reads_them() {
        let props = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let none = BTreeMap::new();
        let c = LogConfig::resolve(
            &none,
            &props(&[("log.retention.hours", "2"), ("log.roll.hours", "1")]),
        );
        assert_eq!(c.retention_ms, 7_200_000);
        assert_eq!(c.segment_ms, 3_600_000);
        // Minutes win over hours, milliseconds over both.
        let c = LogConfig::resolve(
            &none,
            &props(&[("log.retention.hours", "2"), ("log.retention.minutes", "3")]),
        );
        assert_eq!(c.retention_ms, 180_000);
        let c = LogConfig::resolve(
            &none,
            &props(&[("log.retention.minutes", "3"), ("log.retention.ms", "5")]),
        );
        assert_eq!(c.retention_ms, 5);
        // A topic override beats them all.
        let c = LogConfig::resolve(
            &props(&[("retention.ms", "9")]),
            &props(&[("log.retention.hours", "2")]),
        );
        assert_eq!(c.retention_ms, 9);
    }

    #[test]
    fn topic_override_beats_broker_default_beats_kafka_default() {
        let mut broker = BTreeMap::new();
        broker.insert("log.retention.ms".to_string(), "1000".to_string());
        broker.insert("log.segment.bytes".to_string(), "2048".to_string());
        let mut topic = BTreeMap::new();
        topic.insert("retention.ms".to_string(), "5".to_string());
        let c = LogConfig::resolve(&topic, &broker);
        assert_eq!(c.retention_ms, 5);
        assert_eq!(c.segment_bytes, 2048);
        assert_eq!(c.max_message_bytes, 1_048_588);
        assert_eq!(c.retention_bytes, -1);
        assert_eq!(
            c.cleanup_policy,
            CleanupPolicy {
                delete: true,
                compact: false
            }
        );
    }

    #[test]
    fn validation_names_the_bad_key() {
        let err = validate_topic_configs([("retention.ms", "soon")]).unwrap_err();
        assert!(matches!(err, ConfigError::InvalidValue { ref key, .. } if key == "retention.ms"));
        assert_eq!(
            validate_topic_configs([("no.such.key", "1")]),
            Err(ConfigError::UnknownKey("no.such.key".into()))
        );
        assert!(validate_topic_configs([("cleanup.policy", "compact,delete")]).is_ok());
    }

    #[test]
    fn compaction_keys_resolve_and_validate() {
        let c = LogConfig::default();
        assert_eq!(c.min_cleanable_dirty_ratio.get(), 0.5);
        assert_eq!(c.min_compaction_lag_ms, 0);
        assert_eq!(c.max_compaction_lag_ms, i64::MAX);
        let mut broker = BTreeMap::new();
        broker.insert(
            "log.cleaner.min.cleanable.ratio".to_string(),
            "0.1".to_string(),
        );
        broker.insert(
            "log.cleaner.min.compaction.lag.ms".to_string(),
            "60000".to_string(),
        );
        let mut topic = BTreeMap::new();
        topic.insert("max.compaction.lag.ms".to_string(), "3600000".to_string());
        let c = LogConfig::resolve(&topic, &broker);
        assert_eq!(c.min_cleanable_dirty_ratio.get(), 0.1);
        assert_eq!(c.min_compaction_lag_ms, 60_000);
        assert_eq!(c.max_compaction_lag_ms, 3_600_000);
        let cases = [
            ("min.cleanable.dirty.ratio", "0", true),
            ("min.cleanable.dirty.ratio", "0.75", true),
            ("min.cleanable.dirty.ratio", "1", true),
            ("min.cleanable.dirty.ratio", "1.5", false),
            ("min.cleanable.dirty.ratio", "-0.1", false),
            ("min.cleanable.dirty.ratio", "NaN", false),
            ("min.cleanable.dirty.ratio", "half", false),
            ("min.compaction.lag.ms", "0", true),
            ("min.compaction.lag.ms", "-1", false),
            ("max.compaction.lag.ms", "0", false),
            ("max.compaction.lag.ms", "9223372036854775807", true),
        ];
        for (key, value, ok) in cases {
            assert_eq!(
                validate_topic_configs([(key, value)]).is_ok(),
                ok,
                "{key}={value}"
            );
        }
        let mut raw = BTreeMap::new();
        raw.insert(
            "log.cleaner.min.cleanable.ratio".to_string(),
            "2".to_string(),
        );
        assert!(BrokerConfig::from_map(raw).is_err());
    }

    #[test]
    fn cleaner_broker_keys_default_like_kafka() {
        let c = BrokerConfig::from_map(BTreeMap::new()).unwrap();
        assert!(c.log_cleaner_enable);
        assert_eq!(c.log_cleaner_backoff_ms, 15_000);
        let mut raw = BTreeMap::new();
        raw.insert("log.cleaner.enable".to_string(), "false".to_string());
        raw.insert("log.cleaner.backoff.ms".to_string(), "500".to_string());
        let c = BrokerConfig::from_map(raw).unwrap();
        assert!(!c.log_cleaner_enable);
        assert_eq!(c.log_cleaner_backoff_ms, 500);
    }

    #[test]
    fn properties_and_listeners_parse() {
        let raw = BrokerConfig::parse_properties(
            "# comment\nnode.id=2\nlisteners=PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:9193\nlog.dirs=/tmp/a\n",
        )
        .unwrap();
        let c = BrokerConfig::from_map(raw).unwrap();
        assert_eq!(c.node_id, 2);
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(c.listeners[1].name, "CONTROLLER");
        assert_eq!(c.advertised_listeners[0].port, 9093);
        assert!(c.auto_create_topics_enable);
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    /// `docs/configuration.md` names every key with its default.
    #[test]
    fn configuration_doc_lists_every_key() {
        let doc = include_str!("../../../docs/configuration.md");
        for d in TOPIC_CONFIGS {
            let row = format!("| `{}` | `{}` | `{}` |", d.key, d.broker_key, d.default);
            assert!(doc.contains(&row), "docs/configuration.md lacks: {row}");
        }
        for (k, v) in BROKER_CONFIGS {
            assert!(
                doc.contains(&format!("| `{k}` | `{v}` |")),
                "docs/configuration.md lacks broker key {k}"
            );
        }
    }
}
