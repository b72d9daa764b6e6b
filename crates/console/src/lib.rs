//! Layer 4: the web console and the HTTP API every node serves on its
//! HTTP listener (`kraftwerk.http.listener`, beside `/metrics`): the
//! console's pages under `/console/`, the API under `/api/v1`, described by
//! the OpenAPI document at `/api/v1/openapi.json`.
//!
//! The API is a Kafka client of the node it runs in: each call goes through
//! one of the node's own Kafka listeners with Kraftwerk's client library, so
//! it answers what any client would be answered, with Kafka's error codes
//! (as JSON: `error_code`, Kafka's `error` name, `message`). Record shapes
//! follow Confluent's REST Proxy v3 (`{"type": "STRING" | "JSON" |
//! "BINARY", "data": ...}` for keys and values).
//!
//! When the listener it goes through uses SASL, every call must carry HTTP
//! Basic credentials, which become that connection's SASL user: the caller
//! is authenticated by the broker and its ACLs apply as to any client. In
//! read-only mode only reads are served.
//!
//! The console is a page of plain HTML, CSS and JavaScript compiled into the
//! binary (nothing is fetched from elsewhere): it reads and changes the
//! cluster through the API above and draws its charts from the nodes'
//! counters (`/api/v1/stats`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use kraftwerk_client::admin::OffsetSpec;
use kraftwerk_client::{
    Admin, ClientConfig, ClientError, Consumer, ConsumerConfig, NewTopic, Producer, ProducerConfig,
    ProducerRecord,
};
use kraftwerk_types::ErrorCode;
use serde::Deserialize;
use serde_json::{json, Value};

/// The OpenAPI 3.0 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The console's page, style and script.
const CONSOLE_HTML: &str = include_str!("ui/index.html");
const CONSOLE_CSS: &str = include_str!("ui/console.css");
const CONSOLE_JS: &str = include_str!("ui/console.js");

/// The longest a records read waits for records to arrive.
const MAX_POLL_MS: u64 = 10_000;
/// The most records one read returns.
const MAX_RECORDS: usize = 1_000;
/// The most partitions a topic created through the API may have (one
/// request must not ask the cluster for millions).
const MAX_PARTITIONS: i32 = 10_000;

/// How the console and the API reach the node and whom they serve.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// This node as a Kafka client reaches it. When its security uses SASL,
    /// callers must sign in (HTTP Basic) and act as themselves.
    pub client: ClientConfig,
    /// Serve reads only (`kraftwerk.http.api.read.only`).
    pub read_only: bool,
}

/// What the API needs: how to reach this node as a Kafka client.
pub struct Api {
    client: ClientConfig,
    read_only: bool,
}

impl Api {
    fn authenticates(&self) -> bool {
        self.client.security.as_ref().is_some_and(|s| s.uses_sasl())
    }
}

/// The console (`/`, `/console/`) and the `/api/v1` routes.
pub fn router(config: ConsoleConfig) -> Router {
    let api = Arc::new(Api {
        client: config.client,
        read_only: config.read_only,
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(console_page))
        .route("/console/console.css", get(console_css))
        .route("/console/console.js", get(console_js))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/session", get(session_info))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/brokers", get(brokers))
        .route("/api/v1/topics", get(list_topics).post(create_topic))
        .route("/api/v1/topics/{topic}", get(topic).delete(delete_topic))
        .route(
            "/api/v1/topics/{topic}/configs",
            get(topic_configs).patch(alter_topic_configs),
        )
        .route(
            "/api/v1/topics/{topic}/records",
            axum::routing::post(produce),
        )
        .route(
            "/api/v1/topics/{topic}/partitions/{partition}/records",
            get(consume),
        )
        .route("/api/v1/groups", get(list_groups))
        .route("/api/v1/groups/{group}", get(group).delete(delete_group))
        .route(
            "/api/v1/groups/{group}/offsets",
            axum::routing::put(reset_offsets),
        )
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), guard))
        .with_state(api)
}

/// Turns away, before any handler runs, what this node does not serve to
/// the caller: changes in read-only mode, and anything without credentials
/// when callers must sign in (the page too, so that a browser asks for
/// them once and sends them with every call the page makes).
async fn guard(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if api.read_only && !reads && path.starts_with("/api/") {
        return ApiError {
            status: StatusCode::FORBIDDEN,
            code: ErrorCode::POLICY_VIOLATION.0,
            name: None,
            message: "this node's HTTP API is read-only (kraftwerk.http.api.read.only=true)".into(),
        }
        .into_response();
    }
    let public = path == "/api/v1/openapi.json";
    if api.authenticates() && !public && basic_credentials(request.headers()).is_none() {
        return ApiError::unauthenticated("sign in with a SASL user (HTTP Basic)").into_response();
    }
    next.run(request).await
}

/// User and password of an `Authorization: Basic ...` header.
fn basic_credentials(headers: &axum::http::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(B64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

/// One caller's way into the cluster: this node's client settings, signed
/// in as the caller when the API authenticates.
pub struct Session {
    client: ClientConfig,
    user: Option<String>,
}

impl Session {
    async fn admin(&self) -> Result<Admin, ApiError> {
        Ok(Admin::new(self.client.clone()).await?)
    }
}

impl FromRequestParts<Arc<Api>> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Session, ApiError> {
        if !api.authenticates() {
            return Ok(Session {
                client: api.client.clone(),
                user: None,
            });
        }
        let (user, password) = basic_credentials(&parts.headers)
            .ok_or_else(|| ApiError::unauthenticated("sign in with a SASL user (HTTP Basic)"))?;
        let security = api
            .client
            .security
            .as_ref()
            .and_then(|s| s.with_credentials(&user, &password));
        let mut client = api.client.clone();
        client.security = security;
        Ok(Session {
            client,
            user: Some(user),
        })
    }
}

/// One of the console's files, never cached (they change with the binary).
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn console_page() -> Response {
    asset("text/html; charset=utf-8", CONSOLE_HTML)
}

async fn console_css() -> Response {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

async fn console_js() -> Response {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}

/// Who the caller is to the cluster and what this node lets them do. With
/// credentials, they are checked against the broker first.
async fn session_info(session: Session, State(api): State<Arc<Api>>) -> Answer {
    if session.user.is_some() {
        session.admin().await?;
    }
    ok(json!({
        "principal": format!("User:{}", session.user.as_deref().unwrap_or("ANONYMOUS")),
        "authenticated": session.user.is_some(),
        "read_only": api.read_only,
    }))
}

/// An answer of the API: JSON with a status, or an error.
type Answer = Result<Response, ApiError>;

/// An error as the API answers it: an HTTP status, and Kafka's error code
/// and name where there is one.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: i16,
    /// Kafka's name for `code` as the client library spells it
    /// (`UnknownTopicOrPartition`), for codes the broker's table lacks.
    name: Option<String>,
    message: String,
}

impl ApiError {
    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: ErrorCode::INVALID_REQUEST.0,
            name: None,
            message: message.into(),
        }
    }

    fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: ErrorCode::SASL_AUTHENTICATION_FAILED.0,
            name: None,
            message: message.into(),
        }
    }

    fn not_found(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: code.0,
            name: None,
            message: message.into(),
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> ApiError {
        let message = e.to_string();
        let name = match &e {
            ClientError::Kafka { name, .. } => Some(name.clone()),
            _ => None,
        };
        let (status, code) = match &e {
            ClientError::Kafka { code, .. } => (status_of(*code), *code),
            ClientError::UnknownTopic(_) | ClientError::UnknownPartition { .. } => (
                StatusCode::NOT_FOUND,
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
            ),
            ClientError::RecordTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::MESSAGE_TOO_LARGE.0,
            ),
            ClientError::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::REQUEST_TIMED_OUT.0,
            ),
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::BROKER_NOT_AVAILABLE.0,
            ),
        };
        ApiError {
            status,
            code,
            name,
            message,
        }
    }
}

/// The HTTP status for a Kafka error code: what the caller got wrong is a
/// 4xx, what the cluster cannot do now a 503.
fn status_of(code: i16) -> StatusCode {
    match ErrorCode(code) {
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION | ErrorCode::GROUP_ID_NOT_FOUND => {
            StatusCode::NOT_FOUND
        }
        ErrorCode::TOPIC_ALREADY_EXISTS
        | ErrorCode::NON_EMPTY_GROUP
        | ErrorCode::UNKNOWN_MEMBER_ID
        | ErrorCode::REBALANCE_IN_PROGRESS
        | ErrorCode::ILLEGAL_GENERATION => StatusCode::CONFLICT,
        ErrorCode::TOPIC_AUTHORIZATION_FAILED
        | ErrorCode::GROUP_AUTHORIZATION_FAILED
        | ErrorCode::CLUSTER_AUTHORIZATION_FAILED
        | ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED => StatusCode::FORBIDDEN,
        ErrorCode::SASL_AUTHENTICATION_FAILED => StatusCode::UNAUTHORIZED,
        ErrorCode::THROTTLING_QUOTA_EXCEEDED => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::MESSAGE_TOO_LARGE | ErrorCode::RECORD_LIST_TOO_LARGE => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        ErrorCode::LEADER_NOT_AVAILABLE
        | ErrorCode::NOT_LEADER_OR_FOLLOWER
        | ErrorCode::REQUEST_TIMED_OUT
        | ErrorCode::BROKER_NOT_AVAILABLE
        | ErrorCode::NOT_CONTROLLER
        | ErrorCode::COORDINATOR_NOT_AVAILABLE
        | ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
        | ErrorCode::NOT_COORDINATOR
        | ErrorCode::NOT_ENOUGH_REPLICAS
        | ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
        | ErrorCode::KAFKA_STORAGE_ERROR
        | ErrorCode::UNKNOWN_SERVER_ERROR => StatusCode::SERVICE_UNAVAILABLE,
        // Everything else refuses what was asked: an invalid name, value
        // or request.
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let name = match (ErrorCode(self.code).name(), &self.name) {
            (Some(name), _) => name.to_string(),
            (None, Some(camel)) => upper_snake(camel),
            (None, None) => "UNKNOWN_SERVER_ERROR".to_string(),
        };
        let body = Json(json!({
            "error_code": self.code,
            "error": name,
            "message": self.message,
        }));
        if self.status == StatusCode::UNAUTHORIZED {
            // Tells a browser to ask for a user and password.
            return (
                self.status,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"Kraftwerk\"")],
                body,
            )
                .into_response();
        }
        (self.status, body).into_response()
    }
}

/// `UnknownTopicOrPartition` as Kafka writes it: `UNKNOWN_TOPIC_OR_PARTITION`.
fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn ok(value: Value) -> Answer {
    Ok((StatusCode::OK, Json(value)).into_response())
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

fn broker_json(b: &kraftwerk_client::admin::BrokerDescription) -> Value {
    json!({
        "broker_id": b.id,
        "host": b.host,
        "port": b.port,
        "rack": b.rack,
        "fenced": b.fenced,
    })
}

async fn cluster(session: Session) -> Answer {
    let admin = session.admin().await?;
    let d = admin.describe_cluster_including_fenced().await?;
    // The quorum as DescribeQuorum tells it; a caller without the right to
    // describe the cluster still sees the brokers.
    let quorum = match admin.describe_quorum().await {
        Ok(q) => {
            let leader_end = q
                .voters
                .iter()
                .find(|(id, _)| *id == q.leader_id)
                .map(|(_, end)| *end);
            json!({
                "leader_id": q.leader_id,
                "leader_epoch": q.leader_epoch,
                "high_watermark": q.high_watermark,
                "voters": q.voters.iter().map(|(id, end)| json!({
                    "node_id": id,
                    "log_end_offset": end,
                    "lag": match (leader_end, *end) {
                        (Some(l), e) if e >= 0 => Some((l - e).max(0)),
                        _ => None,
                    },
                })).collect::<Vec<_>>(),
            })
        }
        Err(e) => {
            tracing::debug!(error = %e, "DescribeQuorum failed for the HTTP API");
            Value::Null
        }
    };
    // DescribeCluster's controller id is any live broker (clients send
    // admin requests there, it forwards them); the active controller is
    // the quorum's leader.
    let controller_id = quorum
        .get("leader_id")
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    ok(json!({
        "cluster_id": d.cluster_id,
        "controller_id": controller_id,
        "brokers": d.brokers.iter().map(broker_json).collect::<Vec<_>>(),
        "quorum": quorum,
    }))
}

async fn brokers(session: Session) -> Answer {
    let d = session
        .admin()
        .await?
        .describe_cluster_including_fenced()
        .await?;
    ok(Value::Array(d.brokers.iter().map(broker_json).collect()))
}

#[derive(Debug, Deserialize)]
struct ListTopicsQuery {
    #[serde(default)]
    include_internal: bool,
}

fn topic_summary(t: &kraftwerk_client::TopicDescription) -> Value {
    json!({
        "name": t.name,
        "topic_id": t.topic_id.map(|id| id.to_string()),
        "internal": t.internal,
        "partitions_count": t.partitions.len(),
        "replication_factor": t.partitions.first().map_or(0, |p| p.replicas.len()),
    })
}

/// Bytes on disk per partition (the largest of its replicas, so one copy),
/// keyed by topic and partition; empty when DescribeLogDirs is refused.
async fn partition_sizes(admin: &Admin) -> std::collections::HashMap<(String, i32), i64> {
    let mut sizes = std::collections::HashMap::new();
    match admin.describe_log_dirs().await {
        Ok(dirs) => {
            for d in dirs {
                let e = sizes.entry((d.topic, d.partition)).or_insert(0);
                *e = (*e).max(d.size_bytes);
            }
        }
        Err(e) => tracing::debug!(error = %e, "DescribeLogDirs failed for the HTTP API"),
    }
    sizes
}

async fn list_topics(
    session: Session,
    q: Result<Query<ListTopicsQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let q = query(q)?;
    let admin = session.admin().await?;
    let names = admin.list_topics(q.include_internal).await?;
    let described = if names.is_empty() {
        Vec::new()
    } else {
        admin.describe_topics(&names).await?
    };
    let sizes = if described.is_empty() {
        Default::default()
    } else {
        partition_sizes(&admin).await
    };
    let mut out = Vec::with_capacity(described.len());
    for t in &described {
        let mut summary = topic_summary(t);
        let size: Option<i64> = t
            .partitions
            .iter()
            .map(|p| sizes.get(&(t.name.clone(), p.partition)).copied())
            .sum();
        if let Some(map) = summary.as_object_mut() {
            map.insert("size_bytes".into(), json!(size));
            map.insert(
                "under_replicated_partitions".into(),
                json!(t
                    .partitions
                    .iter()
                    .filter(|p| p.isr.len() < p.replicas.len())
                    .count()),
            );
        }
        out.push(summary);
    }
    ok(Value::Array(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTopic {
    name: String,
    #[serde(default = "minus_one")]
    partitions_count: i32,
    #[serde(default = "minus_one_i16")]
    replication_factor: i16,
    #[serde(default)]
    configs: std::collections::BTreeMap<String, String>,
}

fn minus_one() -> i32 {
    -1
}

fn minus_one_i16() -> i16 {
    -1
}

/// A path parameter, or the API's 400 for one that does not parse.
fn path<T>(p: Result<Path<T>, axum::extract::rejection::PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::invalid(e.body_text()))
}

/// Query parameters, or the API's 400 for ones that do not parse.
fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::invalid(e.body_text()))
}

/// A JSON body, or the API's 400 for one that does not parse.
fn body<T: serde::de::DeserializeOwned>(
    json: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    json.map(|Json(t)| t)
        .map_err(|e| ApiError::invalid(e.body_text()))
}

async fn create_topic(
    session: Session,
    request: Result<Json<CreateTopic>, axum::extract::rejection::JsonRejection>,
) -> Answer {
    let request = body(request)?;
    if !(-1..=MAX_PARTITIONS).contains(&request.partitions_count) {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            code: ErrorCode::INVALID_PARTITIONS.0,
            name: None,
            message: format!(
                "partitions_count is -1 (the broker's default) or 1 to {MAX_PARTITIONS}"
            ),
        });
    }
    let admin = session.admin().await?;
    let mut topic = NewTopic::new(
        request.name.clone(),
        request.partitions_count,
        request.replication_factor,
    );
    topic.configs = request.configs.into_iter().collect();
    let results = admin.create_topics(vec![topic], false).await?;
    let mut topic_id = None;
    for r in results {
        if let Some(e) = r.error {
            return Err(e.into());
        }
        topic_id = r.topic_id;
    }
    // Metadata shows a new topic once every broker has it; answer with
    // what was asked for if that takes long.
    for _ in 0..20 {
        if let Ok(t) = describe_one(&admin, &request.name).await {
            if !t.partitions.is_empty() {
                return Ok((StatusCode::CREATED, Json(topic_summary(&t))).into_response());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let summary = json!({
        "name": request.name,
        "topic_id": topic_id.map(|id| id.to_string()),
        "internal": false,
        "partitions_count": request.partitions_count.max(0),
        "replication_factor": request.replication_factor.max(0),
    });
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

async fn describe_one(
    admin: &Admin,
    name: &str,
) -> Result<kraftwerk_client::TopicDescription, ApiError> {
    admin
        .describe_topics(&[name.to_string()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            ApiError::not_found(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("unknown topic {name}"),
            )
        })
}

async fn topic(
    session: Session,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Answer {
    let name = path(name)?;
    let admin = session.admin().await?;
    let t = describe_one(&admin, &name).await?;
    let sizes = partition_sizes(&admin).await;
    let mut partitions = Vec::with_capacity(t.partitions.len());
    for p in &t.partitions {
        // A partition without a leader has no offsets to give.
        let offsets = if p.leader >= 0 {
            let earliest = admin
                .list_offsets(&t.name, p.partition, OffsetSpec::Earliest)
                .await
                .ok();
            let latest = admin
                .list_offsets(&t.name, p.partition, OffsetSpec::Latest)
                .await
                .ok();
            (earliest.map(|o| o.0), latest.map(|o| o.0))
        } else {
            (None, None)
        };
        partitions.push(json!({
            "partition": p.partition,
            "leader": p.leader,
            "leader_epoch": p.leader_epoch,
            "replicas": p.replicas,
            "isr": p.isr,
            "offline": p.offline,
            "under_replicated": p.isr.len() < p.replicas.len(),
            "earliest_offset": offsets.0,
            "latest_offset": offsets.1,
            "size_bytes": sizes.get(&(t.name.clone(), p.partition)),
        }));
    }
    let mut out = topic_summary(&t);
    if let Some(map) = out.as_object_mut() {
        map.insert("partitions".into(), Value::Array(partitions));
    }
    ok(out)
}

async fn delete_topic(
    session: Session,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Answer {
    let name = path(name)?;
    let admin = session.admin().await?;
    let results = admin.delete_topics(vec![name]).await?;
    if let Some(e) = results.into_iter().find_map(|r| r.error) {
        return Err(e.into());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn topic_configs(
    session: Session,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Answer {
    let name = path(name)?;
    let admin = session.admin().await?;
    describe_one(&admin, &name).await?;
    let entries = admin.describe_configs(&name).await?;
    ok(Value::Array(
        entries
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "value": c.value,
                    "source": c.source_name(),
                    "read_only": c.read_only,
                    "is_default": c.is_default,
                    "sensitive": c.sensitive,
                })
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlterConfigs {
    /// Keys to set, with their values.
    #[serde(default)]
    set: std::collections::BTreeMap<String, String>,
    /// Keys to return to their defaults.
    #[serde(default)]
    delete: Vec<String>,
}

async fn alter_topic_configs(
    session: Session,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
    request: Result<Json<AlterConfigs>, axum::extract::rejection::JsonRejection>,
) -> Answer {
    let name = path(name)?;
    let request = body(request)?;
    let admin = session.admin().await?;
    describe_one(&admin, &name).await?;
    let changes: Vec<(String, Option<String>)> = request
        .set
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .chain(request.delete.into_iter().map(|k| (k, None)))
        .collect();
    if changes.is_empty() {
        return Err(ApiError::invalid(
            "nothing to change: give `set` or `delete`",
        ));
    }
    admin.alter_topic_configs(&name, changes).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A key or value as the API carries it (Confluent REST v3's shape).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    #[serde(rename = "type")]
    kind: DataType,
    data: Value,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "UPPERCASE")]
enum DataType {
    String,
    Json,
    Binary,
}

impl Data {
    fn bytes(&self, what: &str) -> Result<Option<Bytes>, ApiError> {
        match (self.kind, &self.data) {
            (_, Value::Null) if !matches!(self.kind, DataType::Json) => Ok(None),
            (DataType::String, Value::String(s)) => Ok(Some(Bytes::from(s.clone()))),
            (DataType::String, _) => Err(ApiError::invalid(format!(
                "{what}: type STRING takes a JSON string"
            ))),
            (DataType::Json, v) => Ok(Some(Bytes::from(v.to_string()))),
            (DataType::Binary, Value::String(s)) => B64
                .decode(s)
                .map(|b| Some(Bytes::from(b)))
                .map_err(|e| ApiError::invalid(format!("{what}: type BINARY takes base64: {e}"))),
            (DataType::Binary, _) => Err(ApiError::invalid(format!(
                "{what}: type BINARY takes a base64 string"
            ))),
        }
    }
}

/// Bytes as the API shows them: text when they are UTF-8, else base64.
fn shown(bytes: &Option<Bytes>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => json!({"type": "STRING", "data": text}),
            Err(_) => json!({"type": "BINARY", "data": B64.encode(b)}),
        },
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: String,
    /// Base64; absent or null for a header without a value.
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProduceRecord {
    partition_id: Option<i32>,
    #[serde(default)]
    headers: Vec<Header>,
    key: Option<Data>,
    value: Option<Data>,
    timestamp: Option<i64>,
}

async fn produce(
    session: Session,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
    request: Result<Json<ProduceRecord>, axum::extract::rejection::JsonRejection>,
) -> Answer {
    let name = path(name)?;
    let request = body(request)?;
    let admin = session.admin().await?;
    let topic = describe_one(&admin, &name).await?;
    if let Some(p) = request.partition_id {
        // The topic is there; what the body asks for is not.
        if p < 0 || p as usize >= topic.partitions.len() {
            return Err(ApiError {
                status: StatusCode::BAD_REQUEST,
                code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                name: None,
                message: format!("topic {name} has no partition {p}"),
            });
        }
    }
    let mut headers = Vec::with_capacity(request.headers.len());
    for h in &request.headers {
        let value = match &h.value {
            None => None,
            Some(v) => Some(Bytes::from(B64.decode(v).map_err(|e| {
                ApiError::invalid(format!("header {}: the value is base64: {e}", h.name))
            })?)),
        };
        headers.push((h.name.clone(), value));
    }
    let record = ProducerRecord {
        topic: name.clone(),
        partition: request.partition_id,
        key: match &request.key {
            Some(d) => d.bytes("key")?,
            None => None,
        },
        value: match &request.value {
            Some(d) => d.bytes("value")?,
            None => None,
        },
        headers,
        timestamp_ms: request.timestamp,
    };
    let producer = Producer::new(
        session.client.clone(),
        ProducerConfig {
            linger_ms: 0,
            delivery_timeout_ms: 30_000,
            max_block_ms: 10_000,
            ..ProducerConfig::default()
        },
    )
    .await?;
    let delivery = producer.send(record).await;
    let outcome = match delivery {
        Ok(future) => future.await,
        Err(e) => Err(e),
    };
    if let Err(e) = producer.close().await {
        tracing::debug!(error = %e, "closing the API's producer");
    }
    let metadata = outcome?;
    ok(json!({
        "topic_name": metadata.topic,
        "partition_id": metadata.partition,
        "offset": metadata.offset,
        "timestamp": metadata.timestamp_ms,
    }))
}

#[derive(Debug, Deserialize)]
struct ConsumeQuery {
    /// The first offset to read; the partition's earliest when absent.
    offset: Option<i64>,
    /// Start from the first record at or after this time (ms) instead.
    timestamp: Option<i64>,
    #[serde(default = "default_max_records")]
    max_records: usize,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

fn default_max_records() -> usize {
    100
}

fn default_timeout_ms() -> u64 {
    1_000
}

async fn consume(
    session: Session,
    params: Result<Path<(String, i32)>, axum::extract::rejection::PathRejection>,
    q: Result<Query<ConsumeQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let (name, partition) = path(params)?;
    let q = query(q)?;
    if q.max_records == 0 || q.max_records > MAX_RECORDS {
        return Err(ApiError::invalid(format!(
            "max_records must be between 1 and {MAX_RECORDS}"
        )));
    }
    if q.timeout_ms > MAX_POLL_MS {
        return Err(ApiError::invalid(format!(
            "timeout_ms must be at most {MAX_POLL_MS}"
        )));
    }
    if q.offset.is_some_and(|o| o < 0) || q.timestamp.is_some_and(|t| t < 0) {
        return Err(ApiError::invalid("offset and timestamp are not negative"));
    }
    let admin = session.admin().await?;
    let topic = describe_one(&admin, &name).await?;
    if partition < 0 || partition as usize >= topic.partitions.len() {
        return Err(ApiError::not_found(
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic {name} has no partition {partition}"),
        ));
    }
    let (earliest, _) = admin
        .list_offsets(&name, partition, OffsetSpec::Earliest)
        .await?;
    let (latest, _) = admin
        .list_offsets(&name, partition, OffsetSpec::Latest)
        .await?;
    let start = match (q.offset, q.timestamp) {
        (Some(o), _) => o.max(earliest),
        (None, Some(t)) => {
            let (o, _) = admin
                .list_offsets(&name, partition, OffsetSpec::Timestamp(t))
                .await?;
            if o < 0 {
                latest
            } else {
                o
            }
        }
        (None, None) => earliest,
    };
    let mut records = Vec::new();
    if start < latest {
        let mut consumer = Consumer::new(session.client.clone(), ConsumerConfig::default()).await?;
        consumer.assign(vec![(name.clone(), partition)]).await?;
        consumer.seek(&name, partition, start);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(q.timeout_ms);
        while records.len() < q.max_records {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let batch = consumer.poll(left).await?;
            let reached_end = batch.last().is_some_and(|r| r.offset + 1 >= latest);
            for r in batch {
                if records.len() >= q.max_records {
                    break;
                }
                records.push(json!({
                    "partition_id": r.partition,
                    "offset": r.offset,
                    "timestamp": r.timestamp_ms,
                    "key": shown(&r.key),
                    "value": shown(&r.value),
                    "headers": r.headers.iter().map(|(n, v)| json!({
                        "name": n,
                        "value": v.as_ref().map(|b| B64.encode(b)),
                    })).collect::<Vec<_>>(),
                }));
            }
            if reached_end {
                break;
            }
        }
    }
    ok(Value::Array(records))
}

async fn list_groups(session: Session) -> Answer {
    let groups = session.admin().await?.list_groups().await?;
    ok(Value::Array(
        groups
            .iter()
            .map(|g| {
                json!({
                    "group_id": g.group_id,
                    "state": g.state,
                    "protocol_type": g.protocol_type,
                })
            })
            .collect(),
    ))
}

async fn group(
    session: Session,
    group_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Answer {
    let group_id = path(group_id)?;
    let admin = session.admin().await?;
    let d = admin.describe_group(&group_id).await?;
    let committed = admin.list_group_offsets(&group_id).await?;
    if d.state == "Dead" && committed.is_empty() {
        return Err(ApiError::not_found(
            ErrorCode::GROUP_ID_NOT_FOUND,
            format!("unknown group {group_id}"),
        ));
    }
    let mut offsets = Vec::with_capacity(committed.len());
    for ((topic, partition), offset) in &committed {
        let latest = admin
            .list_offsets(topic, *partition, OffsetSpec::Latest)
            .await
            .ok()
            .map(|o| o.0);
        offsets.push(json!({
            "topic": topic,
            "partition": partition,
            "committed_offset": offset,
            "latest_offset": latest,
            "lag": latest.map(|l| (l - offset).max(0)),
        }));
    }
    let members: Vec<Value> = d
        .members
        .iter()
        .map(|m| {
            json!({
                "member_id": m.member_id,
                "client_id": m.client_id,
                "host": m.host,
                "group_instance_id": m.group_instance_id,
                "assignments": m.assignment.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
            })
        })
        .collect();
    ok(json!({
        "group_id": d.group_id,
        "state": d.state,
        "protocol_type": d.protocol_type,
        "protocol": d.protocol,
        "members": members,
        "offsets": offsets,
    }))
}

async fn delete_group(
    session: Session,
    group_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Answer {
    let group_id = path(group_id)?;
    let admin = session.admin().await?;
    let results = admin.delete_groups(vec![group_id]).await?;
    if let Some(e) = results.into_iter().find_map(|(_, e)| e) {
        return Err(e.into());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsetReset {
    offsets: Vec<PartitionOffset>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionOffset {
    topic: String,
    partition: i32,
    offset: i64,
}

async fn reset_offsets(
    session: Session,
    group_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    request: Result<Json<OffsetReset>, axum::extract::rejection::JsonRejection>,
) -> Answer {
    let group_id = path(group_id)?;
    let request = body(request)?;
    if request.offsets.is_empty() {
        return Err(ApiError::invalid("no offsets given"));
    }
    if request
        .offsets
        .iter()
        .any(|o| o.offset < 0 || o.partition < 0)
    {
        return Err(ApiError::invalid("offsets and partitions are not negative"));
    }
    let admin = session.admin().await?;
    for o in &request.offsets {
        let t = describe_one(&admin, &o.topic).await?;
        if o.partition as usize >= t.partitions.len() {
            return Err(ApiError::not_found(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic {} has no partition {}", o.topic, o.partition),
            ));
        }
    }
    let offsets = request
        .offsets
        .into_iter()
        .map(|o| ((o.topic, o.partition), o.offset))
        .collect();
    admin.alter_group_offsets(&group_id, offsets).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_kafkas_names_and_a_status_by_who_is_at_fault() {
        assert_eq!(
            upper_snake("UnknownTopicOrPartition"),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        let cases = [
            (ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, StatusCode::NOT_FOUND),
            (ErrorCode::TOPIC_ALREADY_EXISTS, StatusCode::CONFLICT),
            (ErrorCode::TOPIC_AUTHORIZATION_FAILED, StatusCode::FORBIDDEN),
            (
                ErrorCode::THROTTLING_QUOTA_EXCEEDED,
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (ErrorCode::NOT_CONTROLLER, StatusCode::SERVICE_UNAVAILABLE),
            (ErrorCode::INVALID_PARTITIONS, StatusCode::BAD_REQUEST),
        ];
        for (code, status) in cases {
            assert_eq!(status_of(code.0), status, "{code:?}");
        }
    }

    #[test]
    fn keys_and_values_read_as_their_declared_type() {
        let data = |kind, data| Data { kind, data };
        assert_eq!(
            data(DataType::String, json!("k"))
                .bytes("key")
                .ok()
                .flatten(),
            Some(Bytes::from("k"))
        );
        assert_eq!(
            data(DataType::Json, json!({"a": 1}))
                .bytes("value")
                .ok()
                .flatten(),
            Some(Bytes::from("{\"a\":1}"))
        );
        assert_eq!(
            data(DataType::Binary, json!("/wAQ"))
                .bytes("value")
                .ok()
                .flatten(),
            Some(Bytes::from(vec![0xff, 0x00, 0x10]))
        );
        assert!(data(DataType::Binary, json!("not base64!"))
            .bytes("value")
            .is_err());
        assert!(data(DataType::String, json!(5)).bytes("value").is_err());
        assert_eq!(
            shown(&Some(Bytes::from(vec![0xff]))),
            json!({"type": "BINARY", "data": "/w=="})
        );
        assert_eq!(shown(&None), Value::Null);
        let document: Value = serde_json::from_str(OPENAPI).unwrap_or(Value::Null);
        assert_eq!(document["openapi"], "3.0.3");
    }
}
