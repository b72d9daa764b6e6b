//! One TCP connection to one broker: version negotiation, correlation ids
//! and pipelined requests.
//!
//! Writers register a oneshot sender under a fresh correlation id, then write
//! the framed request. A background reader task takes whole frames off the
//! socket, peeks the correlation id and hands the response body to whoever
//! waits for it. Bodies are decoded by the waiting caller, which knows the
//! request type and version.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::error::{codec, ClientError, Result};
use crate::ClientConfig;

/// Requests allowed on the wire per connection before `send` waits.
pub const CONNECTION_IN_FLIGHT_MAX: usize = 64;
/// ApiVersions attempts while stepping down after `UNSUPPORTED_VERSION`.
const API_VERSIONS_ATTEMPTS_MAX: usize = 3;
/// Read buffer grown on demand up to one frame of `max_response_bytes`.
const READ_BUFFER_INITIAL_BYTES: usize = 64 * 1024;
const UNSUPPORTED_VERSION_CODE: i16 = 35;

/// The version both sides support, if any: the highest of the intersection.
pub fn highest_common_version(client: (i16, i16), broker: Option<(i16, i16)>) -> Option<i16> {
    let (broker_min, broker_max) = broker?;
    let low = client.0.max(broker_min);
    let high = client.1.min(broker_max);
    (low <= high).then_some(high)
}

/// A connected socket, plain or TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

impl Stream {
    fn split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (Box::new(r), Box::new(w))
            }
        }
    }
}

struct PendingResponse {
    response_header_version: i16,
    reply: oneshot::Sender<Result<Bytes>>,
}

#[derive(Default)]
struct PendingTable {
    by_correlation_id: HashMap<i32, PendingResponse>,
    /// Set once the reader stops; no new requests are accepted after that.
    closed_reason: Option<String>,
}

struct Shared {
    pending: Mutex<PendingTable>,
}

/// Source of [`Connection::id`].
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// One TCP connection to a broker with negotiated API versions.
pub struct Connection {
    /// Unique within the process; never reused.
    id: u64,
    addr: String,
    client_id: Option<StrBytes>,
    writer: tokio::sync::Mutex<WriteHalf>,
    shared: Arc<Shared>,
    in_flight: Arc<Semaphore>,
    next_correlation_id: AtomicI32,
    api_versions: HashMap<i16, (i16, i16)>,
    request_timeout: Duration,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    /// Connects, starts the reader task and negotiates API versions.
    pub async fn connect(addr: &str, config: &ClientConfig) -> Result<Connection> {
        let timeout = Duration::from_millis(config.request_timeout_ms.max(1));
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout)??;
        stream.set_nodelay(true)?;
        let stream = match &config.security {
            Some(security) => tokio::time::timeout(timeout, security.wrap(addr, stream))
                .await
                .map_err(|_| ClientError::Timeout)??,
            None => Stream::Plain(stream),
        };
        let (read_half, write_half) = stream.split();
        let shared = Arc::new(Shared {
            pending: Mutex::new(PendingTable::default()),
        });
        let reader = tokio::spawn(read_loop(
            read_half,
            shared.clone(),
            config.max_response_bytes,
            addr.to_string(),
        ));
        let mut connection = Connection {
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            addr: addr.to_string(),
            client_id: Some(StrBytes::from_string(config.client_id.clone())),
            writer: tokio::sync::Mutex::new(write_half),
            shared,
            in_flight: Arc::new(Semaphore::new(CONNECTION_IN_FLIGHT_MAX)),
            next_correlation_id: AtomicI32::new(0),
            api_versions: HashMap::new(),
            request_timeout: timeout,
            reader,
        };
        connection.api_versions = connection.negotiate_api_versions().await?;
        if let Some(security) = &config.security {
            security.authenticate(&connection).await?;
        }
        tracing::debug!(addr, apis = connection.api_versions.len(), "connected");
        Ok(connection)
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The broker's supported range for an API key, from ApiVersions.
    pub fn api_version_range(&self, key: i16) -> Option<(i16, i16)> {
        self.api_versions.get(&key).copied()
    }

    /// A process-wide unique number for this connection (never reused, unlike
    /// its address in memory).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the reader has stopped (peer closed, bad frame, i/o error).
    pub fn is_closed(&self) -> bool {
        self.shared.pending.lock().closed_reason.is_some() || self.reader.is_finished()
    }

    /// The highest version of `R` that both we and the broker support.
    pub fn version_for<R: Request>(&self) -> Result<i16> {
        let ours = (R::VERSIONS.min, R::VERSIONS.max);
        let broker = self.api_version_range(R::KEY);
        highest_common_version(ours, broker).ok_or(ClientError::UnsupportedVersion {
            api_key: R::KEY,
            client_min: ours.0,
            client_max: ours.1,
            broker,
        })
    }

    /// Sends `req` at the highest common version and waits for its response.
    pub async fn send<R: Request>(&self, req: R) -> Result<R::Response> {
        let version = self.version_for::<R>()?;
        self.send_version(req, version).await
    }

    /// Sends `req` at an explicit version (callers that build version-specific
    /// fields pick it first with [`Connection::version_for`]).
    pub async fn send_version<R: Request>(&self, req: R, version: i16) -> Result<R::Response> {
        let body = self
            .round_trip(
                R::KEY,
                version,
                R::header_version(version),
                Some(<R::Response as HeaderVersion>::header_version(version)),
                |buf| req.encode(buf, version).map_err(codec),
            )
            .await?
            .ok_or_else(|| ClientError::Protocol("missing response body".into()))?;
        decode_body::<R::Response>(body, version)
    }

    /// Writes a request that the broker does not answer (Produce with acks=0).
    pub async fn send_without_response<R: Request>(&self, req: R, version: i16) -> Result<()> {
        self.round_trip(R::KEY, version, R::header_version(version), None, |buf| {
            req.encode(buf, version).map_err(codec)
        })
        .await
        .map(|_| ())
    }

    async fn round_trip(
        &self,
        api_key: i16,
        api_version: i16,
        request_header_version: i16,
        response_header_version: Option<i16>,
        encode_body: impl FnOnce(&mut BytesMut) -> Result<()>,
    ) -> Result<Option<Bytes>> {
        let in_flight = self
            .write_request(
                api_key,
                api_version,
                request_header_version,
                response_header_version,
                encode_body,
            )
            .await?;
        match in_flight {
            Some(in_flight) => in_flight.response().await.map(Some),
            None => Ok(None),
        }
    }

    /// Writes `req` now and returns a handle to await its response later.
    /// Requests written one after another from one task reach the broker in
    /// that order (the producer relies on it for sequence numbers).
    pub async fn send_pipelined<R: Request>(
        &self,
        req: R,
        version: i16,
    ) -> Result<PipelinedResponse<R::Response>> {
        let in_flight = self
            .write_request(
                R::KEY,
                version,
                R::header_version(version),
                Some(<R::Response as HeaderVersion>::header_version(version)),
                |buf| req.encode(buf, version).map_err(codec),
            )
            .await?
            .ok_or_else(|| ClientError::Protocol("missing response handle".into()))?;
        Ok(PipelinedResponse {
            in_flight,
            version,
            _response: std::marker::PhantomData,
        })
    }

    /// Registers the waiter (if a response is expected) and writes the frame.
    async fn write_request(
        &self,
        api_key: i16,
        api_version: i16,
        request_header_version: i16,
        response_header_version: Option<i16>,
        encode_body: impl FnOnce(&mut BytesMut) -> Result<()>,
    ) -> Result<Option<InFlight>> {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let permit = tokio::time::timeout_at(deadline, self.in_flight.clone().acquire_owned())
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|_| self.disconnected("connection is shutting down"))?;

        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let mut header = RequestHeader::default();
        header.request_api_key = api_key;
        header.request_api_version = api_version;
        header.correlation_id = correlation_id;
        header.client_id = self.client_id.clone();

        let mut frame = BytesMut::with_capacity(256);
        frame.put_i32(0);
        header
            .encode(&mut frame, request_header_version)
            .map_err(codec)?;
        encode_body(&mut frame)?;
        let size = i32::try_from(frame.len() - 4)
            .map_err(|_| ClientError::Protocol("request larger than 2 GiB".into()))?;
        frame[0..4].copy_from_slice(&size.to_be_bytes());

        let receiver = match response_header_version {
            Some(response_header_version) => {
                let (reply, receiver) = oneshot::channel();
                let mut pending = self.shared.pending.lock();
                if let Some(reason) = &pending.closed_reason {
                    return Err(self.disconnected(reason));
                }
                pending.by_correlation_id.insert(
                    correlation_id,
                    PendingResponse {
                        response_header_version,
                        reply,
                    },
                );
                Some(receiver)
            }
            None => None,
        };

        let written = {
            let mut writer = self.writer.lock().await;
            tokio::time::timeout_at(deadline, writer.write_all(&frame)).await
        };
        let failure = match written {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(ClientError::Io(err)),
            Err(_) => Some(ClientError::Timeout),
        };
        if let Some(err) = failure {
            let mut pending = self.shared.pending.lock();
            pending.by_correlation_id.remove(&correlation_id);
            // A partial write leaves the stream unusable.
            pending
                .closed_reason
                .get_or_insert_with(|| format!("write failed: {err}"));
            return Err(err);
        }

        Ok(receiver.map(|receiver| InFlight {
            receiver,
            _permit: permit,
            deadline,
            correlation_id,
            shared: self.shared.clone(),
            addr: self.addr.clone(),
        }))
    }

    fn disconnected(&self, reason: &str) -> ClientError {
        ClientError::Disconnected {
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }

    async fn negotiate_api_versions(&self) -> Result<HashMap<i16, (i16, i16)>> {
        let mut version = ApiVersionsRequest::VERSIONS.max;
        for _ in 0..API_VERSIONS_ATTEMPTS_MAX {
            let mut req = ApiVersionsRequest::default();
            if version >= 3 {
                req.client_software_name = StrBytes::from_static_str("kraftwerk-client");
                req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            }
            let body = self
                .round_trip(
                    ApiVersionsRequest::KEY,
                    version,
                    ApiVersionsRequest::header_version(version),
                    Some(ApiVersionsResponse::header_version(version)),
                    |buf| req.encode(buf, version).map_err(codec),
                )
                .await?
                .ok_or_else(|| ClientError::Protocol("missing ApiVersions body".into()))?;
            if body.len() < 2 {
                return Err(ClientError::Protocol("short ApiVersions response".into()));
            }
            let error_code = i16::from_be_bytes([body[0], body[1]]);
            if error_code == UNSUPPORTED_VERSION_CODE {
                // The broker answers in the v0 format with its own ranges.
                let response = decode_body::<ApiVersionsResponse>(body, 0)?;
                let broker = response
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiVersionsRequest::KEY)
                    .map(|k| (k.min_version, k.max_version));
                let next = highest_common_version((0, version - 1), broker).unwrap_or(0);
                if next >= version {
                    return Err(ClientError::Protocol(
                        "broker rejected an ApiVersions version it advertises".into(),
                    ));
                }
                tracing::debug!(addr = %self.addr, from = version, to = next, "ApiVersions fallback");
                version = next;
                continue;
            }
            let response = decode_body::<ApiVersionsResponse>(body, version)?;
            ClientError::check(response.error_code, None)?;
            return Ok(response
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect());
        }
        Err(ClientError::UnsupportedVersion {
            api_key: ApiVersionsRequest::KEY,
            client_min: ApiVersionsRequest::VERSIONS.min,
            client_max: ApiVersionsRequest::VERSIONS.max,
            broker: None,
        })
    }
}

/// A written request whose response has not been read yet.
struct InFlight {
    receiver: oneshot::Receiver<Result<Bytes>>,
    /// Holds a slot of [`CONNECTION_IN_FLIGHT_MAX`] until the answer arrives.
    _permit: tokio::sync::OwnedSemaphorePermit,
    deadline: tokio::time::Instant,
    correlation_id: i32,
    shared: Arc<Shared>,
    addr: String,
}

impl InFlight {
    async fn response(self) -> Result<Bytes> {
        let outcome = tokio::time::timeout_at(self.deadline, self.receiver).await;
        match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::Disconnected {
                addr: self.addr,
                reason: "reader stopped".into(),
            }),
            Err(_) => {
                self.shared
                    .pending
                    .lock()
                    .by_correlation_id
                    .remove(&self.correlation_id);
                Err(ClientError::Timeout)
            }
        }
    }
}

/// The response of a request sent with [`Connection::send_pipelined`].
pub struct PipelinedResponse<T> {
    in_flight: InFlight,
    version: i16,
    _response: std::marker::PhantomData<fn() -> T>,
}

impl<T: Decodable> PipelinedResponse<T> {
    /// Waits for and decodes the response (bounded by `request.timeout.ms`).
    pub async fn wait(self) -> Result<T> {
        let body = self.in_flight.response().await?;
        decode_body::<T>(body, self.version)
    }
}

fn decode_body<M: Decodable>(mut body: Bytes, version: i16) -> Result<M> {
    M::decode(&mut body, version).map_err(codec)
}

async fn read_loop(
    mut socket: ReadHalf,
    shared: Arc<Shared>,
    max_response_bytes: usize,
    addr: String,
) {
    let mut buf = BytesMut::with_capacity(READ_BUFFER_INITIAL_BYTES);
    let reason = loop {
        match kraftwerk_protocol::frame::take_frame(&mut buf, max_response_bytes) {
            Ok(Some(frame)) => {
                if let Err(reason) = dispatch(frame.freeze(), &shared) {
                    break reason;
                }
            }
            Ok(None) => match socket.read_buf(&mut buf).await {
                Ok(0) => break "closed by peer".to_string(),
                Ok(_) => {}
                Err(err) => break format!("read failed: {err}"),
            },
            Err(err) => break err.to_string(),
        }
    };
    tracing::debug!(addr, %reason, "connection reader stopped");
    let waiting = {
        let mut pending = shared.pending.lock();
        pending.closed_reason.get_or_insert(reason.clone());
        std::mem::take(&mut pending.by_correlation_id)
    };
    for (_, waiter) in waiting {
        let _ = waiter.reply.send(Err(ClientError::Disconnected {
            addr: addr.clone(),
            reason: reason.clone(),
        }));
    }
}

/// Routes one response frame to its waiter. An `Err` stops the reader.
fn dispatch(mut frame: Bytes, shared: &Shared) -> std::result::Result<(), String> {
    if frame.len() < 4 {
        return Err(format!(
            "response frame of {} bytes has no header",
            frame.len()
        ));
    }
    let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let Some(waiter) = shared
        .pending
        .lock()
        .by_correlation_id
        .remove(&correlation_id)
    else {
        // The caller gave up (timeout); the late answer is dropped.
        tracing::debug!(correlation_id, "response without a waiter");
        return Ok(());
    };
    let result = ResponseHeader::decode(&mut frame, waiter.response_header_version)
        .map_err(codec)
        .map(|_| frame);
    let _ = waiter.reply.send(result);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_common_version() {
        let cases = [
            ((0, 13), Some((0, 12)), Some(12)),
            ((3, 9), Some((0, 13)), Some(9)),
            ((4, 18), Some((0, 3)), None),
            ((0, 4), Some((2, 2)), Some(2)),
            ((0, 4), None, None),
        ];
        for (client, broker, expected) in cases {
            assert_eq!(
                highest_common_version(client, broker),
                expected,
                "{client:?} {broker:?}"
            );
        }
    }
}

#[cfg(test)]
mod fake_broker_tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    use kafka_protocol::protocol::decode_request_header_from_buffer;
    use tokio::net::TcpListener;

    /// Answers ApiVersions above v2 with UNSUPPORTED_VERSION in the v0
    /// format, and Metadata with the correlation id as cluster id.
    async fn serve(listener: TcpListener, seen_api_versions: Arc<Mutex<Vec<i16>>>) {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut buf = BytesMut::new();
        loop {
            let frame = match kraftwerk_protocol::frame::take_frame(&mut buf, 1 << 20) {
                Ok(Some(frame)) => frame,
                Ok(None) => match socket.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                },
                Err(_) => return,
            };
            let mut frame = frame.freeze();
            let header = decode_request_header_from_buffer(&mut frame).expect("header");
            let mut body = BytesMut::new();
            let response_header_version = match header.request_api_key {
                18 => {
                    seen_api_versions.lock().push(header.request_api_version);
                    let mut response = ApiVersionsResponse::default();
                    let mut versions = ApiVersion::default();
                    versions.api_key = 18;
                    versions.min_version = 0;
                    versions.max_version = 2;
                    let mut metadata = ApiVersion::default();
                    metadata.api_key = 3;
                    metadata.min_version = 0;
                    metadata.max_version = 12;
                    response.api_keys = vec![versions, metadata];
                    let version = if header.request_api_version > 2 {
                        response.error_code = UNSUPPORTED_VERSION_CODE;
                        0
                    } else {
                        header.request_api_version
                    };
                    response.encode(&mut body, version).expect("encode");
                    0
                }
                3 => {
                    let version = header.request_api_version;
                    MetadataRequest::decode(&mut frame, version).expect("metadata request");
                    let mut response = MetadataResponse::default();
                    response.cluster_id =
                        Some(StrBytes::from_string(header.correlation_id.to_string()));
                    response.encode(&mut body, version).expect("encode");
                    MetadataResponse::header_version(version)
                }
                _ => return,
            };
            let mut out = BytesMut::new();
            let mut response_header = ResponseHeader::default();
            response_header.correlation_id = header.correlation_id;
            let mut head = BytesMut::new();
            response_header
                .encode(&mut head, response_header_version)
                .expect("header");
            out.put_i32((head.len() + body.len()) as i32);
            out.extend_from_slice(&head);
            out.extend_from_slice(&body);
            if socket.write_all(&out).await.is_err() {
                return;
            }
        }
    }

    #[tokio::test]
    async fn negotiation_falls_back_and_requests_pipeline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let server = tokio::spawn(serve(listener, seen.clone()));
        let config = ClientConfig {
            bootstrap_servers: vec![addr.clone()],
            request_timeout_ms: 5_000,
            ..ClientConfig::default()
        };
        let connection = Connection::connect(&addr, &config).await.expect("connect");
        assert_eq!(*seen.lock(), vec![ApiVersionsRequest::VERSIONS.max, 2]);
        assert_eq!(connection.api_version_range(3), Some((0, 12)));
        assert_eq!(
            connection
                .version_for::<MetadataRequest>()
                .expect("metadata"),
            12
        );
        assert!(connection
            .version_for::<kafka_protocol::messages::FetchRequest>()
            .is_err());

        let (a, b) = tokio::join!(
            connection.send(MetadataRequest::default()),
            connection.send(MetadataRequest::default())
        );
        let mut ids = vec![
            a.expect("a").cluster_id.expect("id").to_string(),
            b.expect("b").cluster_id.expect("id").to_string(),
        ];
        ids.sort();
        assert_eq!(ids, vec!["2".to_string(), "3".to_string()]);
        drop(connection);
        server.abort();
    }
}
