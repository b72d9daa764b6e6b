//! The Kafka listener: one task per connection, requests answered in order.
//!
//! A frame is taken only once it is wholly buffered, and its size is checked
//! against `socket.request.max.bytes` before any room is reserved. A frame
//! that cannot be understood closes that one connection; everyone else is
//! served as before.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use kraftwerk_protocol::frame::{take_frame, FrameError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handlers::{self, Outcome};
use crate::BrokerState;

/// How many bytes one read from a socket may add to its buffer.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Accepts connections on `listener`, the one called `name` in `listeners`.
pub async fn serve(
    listener: TcpListener,
    name: Arc<str>,
    state: Arc<BrokerState>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    let shutdown = shutdown.clone();
                    let name = name.clone();
                    tracker.spawn(async move {
                        if let Err(reason) = connection(stream, peer, &name, state, shutdown).await {
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

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    listener: &str,
    state: Arc<BrokerState>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let max_frame_bytes = state.config.socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut out = BytesMut::new();
    loop {
        // Answer every whole request already buffered, in order.
        loop {
            match take_frame(&mut buf, max_frame_bytes) {
                Ok(Some(frame)) => {
                    match handlers::handle_frame(&state, frame.freeze(), peer, listener).await {
                        Outcome::Respond(response) => {
                            out.clear();
                            out.extend_from_slice(&(response.len() as i32).to_be_bytes());
                            out.extend_from_slice(&response);
                            stream.write_all(&out).await.map_err(|e| e.to_string())?;
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
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 && buf.len() < 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        let read = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = read_some(&mut stream, &mut buf) => r,
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

async fn read_some(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() == buf.len() {
        buf.reserve(READ_CHUNK_BYTES);
    }
    stream.read_buf(buf).await
}
