//! How Kraftwerk's gRPC servers accept connections and its clients dial
//! them: TCP with Nagle's algorithm off, and TLS when the listener's
//! protocol is SSL (HTTP/2 negotiated by ALPN; the server's configuration
//! decides whether a client certificate is required).
//!
//! Nagle off: a follower fetch answer or a Raft reply is a few small HTTP/2
//! frames written one after the other; with Nagle on, the second waits for
//! the peer's delayed acknowledgement of the first (tens of milliseconds on
//! Linux), and every acks=all produce waits with it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint, Uri};

/// A handshake that has not finished in this time is dropped, so that a
/// peer that connects and says nothing holds no resources.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS configurations of one gRPC listener, read each time a
/// connection is accepted or dialled (so that renewed certificates are
/// used without a restart).
pub trait NodeTls: std::fmt::Debug + Send + Sync + 'static {
    /// What a server presents and whom it accepts; ALPN must offer `h2`.
    fn server(&self) -> Arc<rustls::ServerConfig>;
    /// What a client trusts and presents; ALPN must offer `h2`.
    fn client(&self) -> Arc<rustls::ClientConfig>;
}

/// One accepted gRPC connection.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.tcp().local_addr().ok(),
            remote_addr: self.tcp().peer_addr().ok(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The connections a gRPC server accepts on `listener`, for
/// `serve_with_incoming`. With `tls`, each handshake runs in a task of its
/// own, so a slow or hostile peer delays no one; a refused handshake is
/// logged with the peer's address and the connection closed. Accepting
/// stops when the server drops the stream.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<dyn NodeTls>>,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // rather than spin.
                    tracing::warn!(error = %e, "accepting a gRPC connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "TCP_NODELAY");
            }
            let Some(tls) = &tls else {
                if tx.send(Ok(Conn::Plain(stream))).await.is_err() {
                    return;
                }
                continue;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        // The server has gone when the receiver has.
                        let _ = tx.send(Ok(Conn::Tls(Box::new(s)))).await;
                    }
                    // A peer that connects and closes without a word is a
                    // liveness probe of the controller (or a port scan).
                    Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        tracing::debug!(%peer, "gRPC connection closed before a TLS handshake")
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "gRPC TLS handshake refused")
                    }
                    Err(_) => tracing::warn!(%peer, "gRPC TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// An endpoint for `addr` (`host:port`), to be configured (timeouts,
/// keep-alive) and then opened with [`connect_lazy`].
pub fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))
}

/// A channel that dials `endpoint` when first used and again after a
/// connection is lost: plain TCP, or TLS with `tls`'s client
/// configuration (the host name checked as that configuration says).
pub fn connect_lazy(endpoint: Endpoint, tls: Option<&Arc<dyn NodeTls>>) -> Channel {
    let Some(tls) = tls.cloned() else {
        return endpoint.tcp_nodelay(true).connect_lazy();
    };
    endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| {
        let tls = tls.clone();
        async move {
            let invalid =
                |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
            let host = uri
                .host()
                .ok_or_else(|| invalid("no host in the address"))?;
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid("no port in the address"))?;
            let bare = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let tcp = TcpStream::connect((bare.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(bare)
                .map_err(|e| invalid(&format!("host name {host}: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(tls.client())
                .connect(name, tcp)
                .await?;
            Ok::<_, io::Error>(TokioIo::new(stream))
        }
    }))
}
