//! `GET /api/v1/stats` on the HTTP listener: each broker's traffic
//! counters since its process started (bytes in from producers, bytes out
//! to consumers, records in, requests answered; per topic too), as JSON.
//! The web console samples it twice and draws rates from the difference.
//!
//! A node answers for the whole cluster: its own counters, and those of
//! every other registered, unfenced broker with an HTTP endpoint in its
//! metadata image, asked concurrently for `?scope=local` (each within
//! [`PEER_TIMEOUT`]). A broker that does not answer, is fenced or
//! registered no HTTP endpoint is listed with `reachable: false` and why.
//! `?scope=local` answers with this node alone and asks nobody.
//!
//! The counters are those of `/metrics`
//! (`kafka_server_brokertopicmetrics_*`, `kafka_network_requestmetrics_requestspersec`);
//! replication between brokers is not counted, as in Kafka's
//! BrokerTopicMetrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kraftwerk_metadata::BrokerRegistration;
use kraftwerk_types::ErrorCode;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::metrics::TopicTotals;
use crate::BrokerState;

pub const STATS_PATH: &str = "/api/v1/stats";
/// How long one broker may take to answer; the whole call takes about
/// this long at most, since the brokers are asked at once.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest answer read from another broker (a few hundred bytes per
/// topic it served).
const PEER_ANSWER_BYTES_MAX: usize = 16 * 1024 * 1024;

/// What `GET /api/v1/stats` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsAnswer {
    /// When this node answered, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// By broker id.
    pub brokers: Vec<BrokerStats>,
}

/// One broker's entry: its counters when it answered, else why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerStats {
    pub broker_id: i32,
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_endpoint: Option<String>,
    #[serde(flatten)]
    pub counters: Option<Counters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A broker's counters since its process started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages_in: u64,
    pub requests: u64,
    pub topics: Vec<TopicTotals>,
}

type PeerClient = Client<HttpConnector, Empty<Bytes>>;

struct StatsState {
    broker: Arc<BrokerState>,
    peers: PeerClient,
}

/// The `/api/v1/stats` route, to merge into the HTTP listener's router.
pub fn router(broker: Arc<BrokerState>) -> Router {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(PEER_TIMEOUT));
    connector.set_nodelay(true);
    let peers = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build(connector);
    Router::new()
        .route(STATS_PATH, get(stats))
        .with_state(Arc::new(StatsState { broker, peers }))
}

async fn stats(State(s): State<Arc<StatsState>>, uri: Uri) -> Response {
    let local = match local_scope(uri.query()) {
        Ok(local) => local,
        Err(message) => return invalid_request(message),
    };
    let mut brokers = vec![own_stats(&s.broker)];
    if !local {
        brokers.extend(ask_others(&s).await);
        brokers.sort_by_key(|b| b.broker_id);
    }
    json_response(
        StatusCode::OK,
        &StatsAnswer {
            time_ms: now_ms(),
            brokers,
        },
    )
}

/// Whether the query asks for this node alone (`scope=local`). Other
/// parameters are ignored; a `scope` of any other value is refused.
fn local_scope(query: Option<&str>) -> Result<bool, String> {
    let mut local = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "scope" {
            continue;
        }
        if value != "local" {
            return Err(format!(
                "scope '{value}' is not known; the only scope is 'local'"
            ));
        }
        local = true;
    }
    Ok(local)
}

/// This node's entry.
fn own_stats(broker: &BrokerState) -> BrokerStats {
    let topics = broker.metrics.topic_totals();
    let sum = |f: fn(&TopicTotals) -> u64| topics.iter().map(f).fold(0u64, u64::saturating_add);
    BrokerStats {
        broker_id: broker.config.node_id,
        reachable: true,
        http_endpoint: broker.http_endpoint.clone(),
        counters: Some(Counters {
            bytes_in: sum(|t| t.bytes_in),
            bytes_out: sum(|t| t.bytes_out),
            messages_in: sum(|t| t.messages_in),
            requests: broker.metrics.requests_total(),
            topics,
        }),
        error: None,
    }
}

fn unreachable(b: &BrokerRegistration, error: String) -> BrokerStats {
    BrokerStats {
        broker_id: b.node_id,
        reachable: false,
        http_endpoint: b.http_endpoint.clone(),
        counters: None,
        error: Some(error),
    }
}

/// Every other broker of the image: asked at once when it can be, listed
/// as unreachable when not. One entry per registered broker.
async fn ask_others(s: &StatsState) -> Vec<BrokerStats> {
    let image = s.broker.image.load();
    let me = s.broker.config.node_id;
    let mut entries = Vec::with_capacity(image.brokers.len());
    let mut pending: BTreeMap<i32, &BrokerRegistration> = BTreeMap::new();
    // Bounded by the brokers of the image; dropped (and so aborted) with
    // this call if the caller goes away.
    let mut asks = JoinSet::new();
    for b in image.brokers.values().filter(|b| b.node_id != me) {
        match (&b.http_endpoint, b.fenced) {
            (_, true) => entries.push(unreachable(
                b,
                "the broker is fenced (not heartbeating); not asked".into(),
            )),
            (None, false) => entries.push(unreachable(
                b,
                "the broker registered no HTTP endpoint".into(),
            )),
            (Some(endpoint), false) => {
                pending.insert(b.node_id, b);
                let (peers, endpoint, id) = (s.peers.clone(), endpoint.clone(), b.node_id);
                asks.spawn(async move { ask(&peers, id, endpoint).await });
            }
        }
    }
    while let Some(joined) = asks.join_next().await {
        match joined {
            Ok(entry) => {
                pending.remove(&entry.broker_id);
                entries.push(entry);
            }
            Err(e) => tracing::warn!(error = %e, "asking a broker for its stats failed"),
        }
    }
    for b in pending.into_values() {
        entries.push(unreachable(b, "the request failed".into()));
    }
    entries
}

/// Broker `broker_id`'s own entry, from its HTTP listener at `endpoint`.
async fn ask(peers: &PeerClient, broker_id: i32, endpoint: String) -> BrokerStats {
    let answer = match tokio::time::timeout(PEER_TIMEOUT, fetch(peers, &endpoint)).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {} ms", PEER_TIMEOUT.as_millis())),
    };
    let entry = answer.and_then(|a| {
        a.brokers
            .into_iter()
            .find(|b| b.broker_id == broker_id && b.counters.is_some())
            .ok_or_else(|| format!("{endpoint} did not answer for broker {broker_id}"))
    });
    match entry {
        Ok(entry) => BrokerStats {
            reachable: true,
            http_endpoint: Some(endpoint),
            error: None,
            ..entry
        },
        Err(error) => BrokerStats {
            broker_id,
            reachable: false,
            http_endpoint: Some(endpoint),
            counters: None,
            error: Some(error),
        },
    }
}

async fn fetch(peers: &PeerClient, endpoint: &str) -> Result<StatsAnswer, String> {
    let uri: Uri = format!("http://{endpoint}{STATS_PATH}?scope=local")
        .parse()
        .map_err(|e| format!("'{endpoint}' is not a host:port: {e}"))?;
    let response = peers.get(uri).await.map_err(|e| error_chain(&e))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), PEER_ANSWER_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(format!("HTTP {status}: {text}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("unreadable answer: {e}"))
}

/// An error with its causes (hyper's own says only "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn invalid_request(message: String) -> Response {
    let code = ErrorCode::INVALID_REQUEST;
    json_response(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({
            "error_code": code.code(),
            "error": code.name().unwrap_or("INVALID_REQUEST"),
            "message": message,
        }),
    )
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => (status, [(CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the answer could not be encoded: {e}"),
        )
            .into_response(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_local_scope_is_known() {
        for (query, expected) in [
            (None, Ok(false)),
            (Some(""), Ok(false)),
            (Some("scope=local"), Ok(true)),
            (Some("x=1&scope=local"), Ok(true)),
            (Some("other=cluster"), Ok(false)),
        ] {
            assert_eq!(local_scope(query), expected, "{query:?}");
        }
        for bad in ["scope=cluster", "scope=", "scope"] {
            assert!(local_scope(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_read_back_with_and_without_counters() {
        let answer = StatsAnswer {
            time_ms: 5,
            brokers: vec![
                BrokerStats {
                    broker_id: 1,
                    reachable: true,
                    http_endpoint: Some("h:1".into()),
                    counters: Some(Counters {
                        bytes_in: 3,
                        bytes_out: 2,
                        messages_in: 1,
                        requests: 9,
                        topics: vec![TopicTotals {
                            topic: "t".into(),
                            bytes_in: 3,
                            bytes_out: 2,
                            messages_in: 1,
                        }],
                    }),
                    error: None,
                },
                BrokerStats {
                    broker_id: 2,
                    reachable: false,
                    http_endpoint: Some("h:2".into()),
                    counters: None,
                    error: Some("connection refused".into()),
                },
            ],
        };
        let text = serde_json::to_string(&answer).expect("encodes");
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["brokers"][0]["bytes_in"], 3);
        assert_eq!(value["brokers"][0]["topics"][0]["topic"], "t");
        assert!(value["brokers"][0].get("error").is_none());
        assert!(value["brokers"][1].get("bytes_in").is_none());
        assert_eq!(value["brokers"][1]["error"], "connection refused");
        let back: StatsAnswer = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, answer);
    }
}
