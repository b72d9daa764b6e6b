//! The Kafka listener: one task per connection, requests answered in order.
//!
//! A frame is taken only once it is wholly buffered, and its size is checked
//! against `socket.request.max.bytes` before any room is reserved. A frame
//! that cannot be understood closes that one connection; everyone else is
//! served as before. On TLS listeners the handshake comes first (bounded by
//! [`TLS_HANDSHAKE_TIMEOUT`]); on SASL listeners every frame passes the
//! connection's [`Authenticator`] before any handler sees it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use kraftwerk_protocol::frame::{take_frame, FrameError};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection_limits::{ConnectionLimits, Refused};
use crate::handlers::{self, Outcome};
use crate::security::{self, Authenticator, ListenerSecurity, Step};
use crate::BrokerState;

/// How long a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How many bytes one read from a socket may add to its buffer.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A connection keeps its response buffer between responses up to this
/// size (a consumer's fetch answers of a few MiB reuse it); a larger one is
/// given back after its response is written.
const RESPONSE_BUFFER_KEEP_BYTES: usize = 16 * 1024 * 1024;

/// Accepts connections on `listener`, the one called `name` in `listeners`.
pub async fn serve(
    listener: TcpListener,
    name: Arc<str>,
    security: Arc<ListenerSecurity>,
    state: Arc<BrokerState>,
    limits: Arc<ConnectionLimits>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut refusals = RefusalLog::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let admitted = match limits.admit(peer.ip()) {
                        Ok(admitted) => admitted,
                        Err(refused) => {
                            // Dropping the stream closes it before anything is read.
                            refusals.note(peer, refused);
                            continue;
                        }
                    };
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, error = %e, "could not turn Nagle off");
                    }
                    let state = state.clone();
                    let shutdown = shutdown.clone();
                    let name = name.clone();
                    let security = security.clone();
                    tracker.spawn(async move {
                        let _slot = admitted;
                        let result = secure_connection(stream, peer, &name, &security, state, shutdown).await;
                        if let Err(reason) = result {
                            tracing::debug!(%peer, %reason, "connection closed");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep listening.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Logs refused connections at most once per [`REFUSAL_LOG_INTERVAL`],
/// with how many were refused since, so a flood of connections cannot
/// flood the log too.
#[derive(Default)]
struct RefusalLog {
    last: Option<std::time::Instant>,
    since_last: u64,
}

const REFUSAL_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl RefusalLog {
    fn note(&mut self, peer: SocketAddr, refused: Refused) {
        self.since_last += 1;
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        let limit = match refused {
            Refused::Total { max } => format!("max.connections={max}"),
            Refused::PerIp { max } => format!("max.connections.per.ip={max} for {}", peer.ip()),
        };
        tracing::warn!(%peer, refused = self.since_last, "connection refused: {limit} reached");
        self.last = Some(now);
        self.since_last = 0;
    }
}

/// Runs the listener's TLS handshake, if any, then serves the connection
/// with the principal it starts with and, on SASL listeners, an
/// authenticator.
async fn secure_connection(
    stream: TcpStream,
    peer: SocketAddr,
    listener: &str,
    security: &ListenerSecurity,
    state: Arc<BrokerState>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let auth = security.sasl.clone().map(Authenticator::new);
    let Some(tls) = &security.tls else {
        let principal = security::ANONYMOUS.to_string();
        return connection(stream, peer, listener, principal, auth, state, shutdown).await;
    };
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream));
    let stream = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = handshake => match r {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::info!(%peer, listener, error = %e, "TLS handshake failed; connection closed");
                return Err(format!("TLS handshake failed: {e}"));
            }
            Err(_) => {
                tracing::info!(%peer, listener, "TLS handshake not finished in {TLS_HANDSHAKE_TIMEOUT:?}; connection closed");
                return Err("TLS handshake timed out".into());
            }
        },
    };
    let subject = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(kraftwerk_tls::certificate_subject);
    let principal = match subject {
        // On SASL_SSL the principal is the SASL user, as in Kafka.
        _ if security.sasl.is_some() => security::ANONYMOUS.to_string(),
        None => security::ANONYMOUS.to_string(),
        Some(subject) => match security.principal_mapper.name(&subject) {
            Some(name) => format!("User:{name}"),
            None => {
                // Kafka fails the authentication of such a client.
                tracing::info!(%peer, listener, %subject, "no ssl.principal.mapping.rules rule applies to the client certificate; connection closed");
                return Err("no principal mapping rule applies".into());
            }
        },
    };
    connection(stream, peer, listener, principal, auth, state, shutdown).await
}

/// A connection's byte stream, plain or TLS.
trait KafkaStream: AsyncWrite + Unpin + Send {
    /// Reads what is there into `buf`, reserving room only when needed.
    fn read_some<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl std::future::Future<Output = std::io::Result<usize>> + Send + 'a;
}

impl KafkaStream for TcpStream {
    fn read_some<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl std::future::Future<Output = std::io::Result<usize>> + Send + 'a {
        read_some(self, buf)
    }
}

impl KafkaStream for tokio_rustls::server::TlsStream<TcpStream> {
    async fn read_some(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        self.read_buf(buf).await
    }
}

async fn connection<S: KafkaStream>(
    mut stream: S,
    peer: SocketAddr,
    listener: &str,
    mut principal: String,
    mut auth: Option<Authenticator>,
    state: Arc<BrokerState>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let max_frame_bytes = state.config.socket_request_max_bytes;
    // Room is reserved on the first read, so an idle connection holds no buffer.
    let mut buf = BytesMut::new();
    // Responses are encoded here, one after another, into the same memory.
    let mut out = BytesMut::new();
    loop {
        // Answer every whole request already buffered, in order.
        loop {
            match take_frame(&mut buf, max_frame_bytes) {
                Ok(Some(frame)) => {
                    let frame = frame.freeze();
                    if let Some(auth) = auth.as_mut() {
                        out.clear();
                        match auth.on_frame(&state, &frame, &mut out) {
                            Step::Pass => {}
                            Step::Respond => {
                                stream.write_all(&out).await.map_err(|e| e.to_string())?;
                                if let Some(p) = auth.principal() {
                                    p.clone_into(&mut principal);
                                }
                                continue;
                            }
                            Step::Refuse { reason, delay } => {
                                tracing::info!(%peer, listener, %reason, "SASL: connection closed");
                                tokio::time::sleep(delay).await;
                                if !out.is_empty() {
                                    // Best effort: the connection closes either way.
                                    let _ = stream.write_all(&out).await;
                                    let _ = stream.flush().await;
                                }
                                return Err(reason);
                            }
                        }
                    }
                    let mut hold = std::time::Duration::ZERO;
                    let outcome = handlers::handle_frame(
                        &state, frame, peer, listener, &principal, &mut out, &mut hold,
                    )
                    .await;
                    if !hold.is_zero() && !matches!(outcome, Outcome::Close(_)) {
                        // Over its quota: the answer goes out now, then
                        // nothing more is read from this client for a while.
                        if let Outcome::Respond = outcome {
                            stream.write_all(&out).await.map_err(|e| e.to_string())?;
                        }
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(hold) => {}
                        }
                        continue;
                    }
                    match outcome {
                        Outcome::Respond => {
                            stream.write_all(&out).await.map_err(|e| e.to_string())?;
                            if out.capacity() > RESPONSE_BUFFER_KEEP_BYTES {
                                out = BytesMut::new();
                            }
                        }
                        Outcome::NoResponse => {}
                        Outcome::Close(reason) => {
                            tracing::info!(%peer, %reason, "closing connection after a request that cannot be served");
                            return Err(reason);
                        }
                    }
                }
                Ok(None) => break,
                Err(FrameError::TooLarge { size, max }) => {
                    tracing::warn!(%peer, size, max, "request frame exceeds socket.request.max.bytes; closing connection");
                    return Err(format!("frame of {size} bytes exceeds {max}"));
                }
            }
        }
        let read = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = stream.read_some(&mut buf) => r,
        };
        match read {
            Ok(0) => {
                if buf.has_remaining() {
                    return Err(format!(
                        "peer closed with {} bytes of a partial frame",
                        buf.len()
                    ));
                }
                return Ok(());
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Waits until the socket has bytes, then reads them: room in `buf` is
/// reserved only once there is something to put in it.
async fn read_some(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        match stream.try_read_buf(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            read => return read,
        }
    }
}
