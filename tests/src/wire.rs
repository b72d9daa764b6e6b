//! A bare Kafka wire client for tests that must choose the exact API
//! version of every request: one blocking connection, typed requests from
//! the `kafka-protocol` crate, each response decoded at the version it was
//! asked at. The version sweep and the differential tests against Apache
//! Kafka speak through it, so both brokers get byte-identical requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// How long one request may wait for its response.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response frame a test accepts.
const RESPONSE_BYTES_MAX: usize = 64 << 20;

/// Why a call did not produce a decoded response.
#[derive(Debug)]
pub enum CallError {
    /// The request could not be encoded at that version (a test bug).
    Encode(String),
    /// The broker closed the connection or the socket failed.
    Io(std::io::Error),
    /// The response did not decode at the version asked for.
    Decode(String),
    /// The response answered another request.
    Correlation { sent: i32, received: i32 },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Encode(e) => write!(f, "request does not encode: {e}"),
            CallError::Io(e) => write!(f, "connection failed or closed: {e}"),
            CallError::Decode(e) => write!(f, "response does not decode: {e}"),
            CallError::Correlation { sent, received } => {
                write!(f, "sent correlation id {sent}, got {received}")
            }
        }
    }
}

/// One connection to a broker.
pub struct Wire {
    stream: TcpStream,
    pub addr: SocketAddr,
    correlation_id: i32,
}

impl Wire {
    pub fn connect(addr: impl ToSocketAddrs) -> std::io::Result<Wire> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Wire {
            stream,
            addr,
            correlation_id: 0,
        })
    }

    /// Sends `request` at `version` and decodes the answer at that version.
    pub fn call<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, CallError> {
        self.send(version, request)?;
        self.receive::<R>(version)
    }

    /// Sends `request` without waiting for its answer (a JoinGroup that
    /// waits for other members); [`Wire::receive`] reads it later.
    pub fn send<R: Request>(&mut self, version: i16, request: &R) -> Result<(), CallError> {
        self.correlation_id += 1;
        let correlation_id = self.correlation_id;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("kraftwerk-wire-test")));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 0]);
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(|e| CallError::Encode(e.to_string()))?;
        request
            .encode(&mut buf, version)
            .map_err(|e| CallError::Encode(e.to_string()))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).map_err(CallError::Io)
    }

    /// Reads the answer to the last request sent, at `version`.
    pub fn receive<R: Request>(&mut self, version: i16) -> Result<R::Response, CallError> {
        let correlation_id = self.correlation_id;
        let key = ApiKey::try_from(R::KEY).map_err(|_| CallError::Encode("unknown key".into()))?;
        let mut body = self.read_frame().map_err(CallError::Io)?;
        let response_header =
            ResponseHeader::decode(&mut body, key.response_header_version(version))
                .map_err(|e| CallError::Decode(format!("header: {e}")))?;
        if response_header.correlation_id != correlation_id {
            return Err(CallError::Correlation {
                sent: correlation_id,
                received: response_header.correlation_id,
            });
        }
        let response = R::Response::decode(&mut body, version)
            .map_err(|e| CallError::Decode(e.to_string()))?;
        if !body.is_empty() {
            return Err(CallError::Decode(format!(
                "{} bytes left after the response body",
                body.len()
            )));
        }
        Ok(response)
    }

    fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        if len < 0 || len as usize > RESPONSE_BYTES_MAX {
            return Err(std::io::Error::other(format!(
                "response frame of {len} bytes"
            )));
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }
}

/// A broker's ApiVersions v3 answer: its error code and each advertised
/// (API key, min version, max version).
pub fn advertised(addr: impl ToSocketAddrs) -> (i16, Vec<(i16, i16, i16)>) {
    let mut wire = Wire::connect(addr).expect("connect");
    let response = wire
        .call(
            3,
            &kafka_protocol::messages::ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("kraftwerk-tests"))
                .with_client_software_version(StrBytes::from_static_str("1.0")),
        )
        .expect("ApiVersions v3");
    let keys = response
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    (response.error_code, keys)
}

/// A response's fields, one `path = value` line each: the form in which
/// two brokers' answers are compared field by field. Built from the pretty
/// `Debug` form of the `kafka-protocol` types, whose field names are the
/// protocol's; `Some(x)` is shown as `x`, so a missing optional value and a
/// present one differ in one line.
pub fn fields(response: &impl std::fmt::Debug) -> Vec<String> {
    let pretty = format!("{response:#?}");
    // The open containers; an `Option` wrapper carries no path segment.
    let mut path: Vec<Option<String>> = Vec::new();
    let mut pending_option: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let joined = |path: &[Option<String>]| -> String {
        path.iter().flatten().cloned().collect::<Vec<_>>().join(".")
    };
    for raw in pretty.lines() {
        let line = raw.trim();
        let line = line.strip_suffix(',').unwrap_or(line);
        if line == "}" || line == "]" || line == ")" {
            path.pop();
            continue;
        }
        let (mut name, value) = match split_field(line) {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (String::from("[]"), line.to_string()),
        };
        // The value inside `Some(` takes the name of the field around it.
        if name == "[]" && path.last().is_some_and(Option::is_none) {
            if let Some(option_name) = pending_option.last() {
                name = option_name.clone();
            }
        }
        if value == "Some(" {
            pending_option.push(name);
            path.push(None);
            continue;
        }
        let here = format!("{}.{name}", joined(&path));
        if value.ends_with('{') || value.ends_with('[') || value.ends_with('(') {
            out.push(format!("{here} ="));
            path.push(Some(name));
            continue;
        }
        out.push(format!("{here} = {value}"));
    }
    out
}

/// `name: value` when the line starts with a field name.
fn split_field(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(": ")?;
    let is_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    is_name.then_some((name, value))
}
