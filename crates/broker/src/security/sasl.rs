//! SASL on a Kafka listener: SaslHandshake, then SaslAuthenticate (KIP-152)
//! or, after a version 0 handshake, raw tokens; PLAIN and SCRAM.
//!
//! An [`Authenticator`] belongs to one connection and sees every request
//! frame before the handlers do. Until the client has authenticated it lets
//! through ApiVersions only, answers the two SASL APIs itself and closes
//! the connection on anything else, as Kafka does. With
//! `connections.max.reauth.ms` it tells the client how long its session
//! lasts, accepts re-authentication (KIP-368) and closes a connection
//! whose session ran out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::Decodable;
use kraftwerk_protocol::versions;
use kraftwerk_types::{BrokerConfig, ErrorCode};
use rand::Rng;

use super::scram::{constant_time_eq, ScramMechanism, ScramServer};
use super::SecurityError;
use crate::handlers::{respond, str_bytes};
use crate::BrokerState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            other => ScramMechanism::from_name(other).map(Mechanism::Scram),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
        }
    }
}

/// A SASL listener's settings.
#[derive(Debug)]
pub struct SaslSettings {
    listener: String,
    mechanisms: Vec<Mechanism>,
    /// PLAIN's users and passwords, from the JAAS config's `user_NAME`.
    plain_users: HashMap<String, String>,
    reauth_ms: i64,
    failure_delay: Duration,
}

impl SaslSettings {
    pub fn from_config(
        config: &BrokerConfig,
        listener: &str,
    ) -> Result<SaslSettings, SecurityError> {
        let bad = |key: &str, reason: String| SecurityError::Config {
            listener: listener.to_string(),
            key: key.to_string(),
            reason,
        };
        let mut mechanisms = Vec::new();
        for name in config
            .listener_value(listener, "sasl.enabled.mechanisms")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let m = Mechanism::from_name(name).ok_or_else(|| {
                bad(
                    "sasl.enabled.mechanisms",
                    format!(
                        "{name} is not served; Kraftwerk serves PLAIN, SCRAM-SHA-256 and \
                         SCRAM-SHA-512 (Kafka's default is GSSAPI: set the list explicitly)"
                    ),
                )
            })?;
            if !mechanisms.contains(&m) {
                mechanisms.push(m);
            }
        }
        if mechanisms.is_empty() {
            return Err(bad(
                "sasl.enabled.mechanisms",
                "a SASL listener needs at least one mechanism".into(),
            ));
        }
        let mut plain_users = HashMap::new();
        if mechanisms.contains(&Mechanism::Plain) {
            let prefixed = format!(
                "listener.name.{}.plain.sasl.jaas.config",
                listener.to_ascii_lowercase()
            );
            let jaas = config
                .raw
                .get(&prefixed)
                .cloned()
                .or_else(|| config.listener_value(listener, "sasl.jaas.config"))
                .unwrap_or_default();
            plain_users = jaas_users(&jaas).map_err(|e| bad(&prefixed, e))?;
            if plain_users.is_empty() {
                return Err(bad(
                    &prefixed,
                    "PLAIN is enabled but no user is configured: give the PlainLoginModule \
                     user_NAME=\"password\" entries"
                        .into(),
                ));
            }
        }
        let number = |key: &str| -> i64 {
            config
                .listener_value(listener, key)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Ok(SaslSettings {
            listener: listener.to_string(),
            mechanisms,
            plain_users,
            reauth_ms: number("connections.max.reauth.ms").max(0),
            failure_delay: Duration::from_millis(
                number("connection.failed.authentication.delay.ms").max(0) as u64,
            ),
        })
    }

    fn enabled(&self, name: &str) -> Option<Mechanism> {
        Mechanism::from_name(name).filter(|m| self.mechanisms.contains(m))
    }

    fn names(&self) -> Vec<&'static str> {
        self.mechanisms.iter().map(|m| m.name()).collect()
    }
}

/// The `user_NAME="password"` options of a JAAS login module line.
fn jaas_users(jaas: &str) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    let mut rest = jaas.trim();
    // Skip the module class and its control flag.
    for _ in 0..2 {
        rest = rest
            .trim_start()
            .split_once(char::is_whitespace)
            .map_or("", |(_, r)| r);
    }
    loop {
        rest = rest.trim_start();
        if rest.is_empty() || rest.starts_with(';') {
            break;
        }
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("expected key=\"value\" near '{rest}'"))?;
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| format!("unterminated quote after {key}="))?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after
                .find(|c: char| c.is_whitespace() || c == ';')
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if let Some(user) = key.trim().strip_prefix("user_") {
            users.insert(user.to_string(), value.to_string());
        }
        rest = tail;
    }
    Ok(users)
}

/// What the connection does with a frame the authenticator looked at.
pub enum Step {
    /// Not the authenticator's: the handlers answer it.
    Pass,
    /// The authenticator's answer is in the response buffer.
    Respond,
    /// Wait `delay`, write the response buffer if it is not empty, close.
    Refuse { reason: String, delay: Duration },
}

enum Stage {
    /// Waiting for SaslHandshake.
    Handshake,
    /// The mechanism is chosen; tokens come in SaslAuthenticate requests,
    /// or as bare frames after a version 0 handshake.
    Tokens {
        mechanism: Mechanism,
        raw: bool,
        scram: Option<ScramServer>,
    },
    Authenticated,
}

/// One connection's SASL state.
pub struct Authenticator {
    settings: Arc<SaslSettings>,
    stage: Stage,
    /// `User:NAME` once authenticated.
    principal: Option<String>,
    mechanism: Option<Mechanism>,
    session_ends: Option<Instant>,
}

impl Authenticator {
    pub fn new(settings: Arc<SaslSettings>) -> Self {
        Authenticator {
            settings,
            stage: Stage::Handshake,
            principal: None,
            mechanism: None,
            session_ends: None,
        }
    }

    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// Looks at one request frame before the handlers do.
    pub fn on_frame(&mut self, state: &BrokerState, frame: &Bytes, out: &mut BytesMut) -> Step {
        if let Stage::Tokens { raw: true, .. } = self.stage {
            return self.raw_token(state, frame.clone(), out);
        }
        if frame.len() < 8 {
            return Step::Pass;
        }
        let api_key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let authenticated = matches!(self.stage, Stage::Authenticated);
        let reauth = self.settings.reauth_ms > 0;
        match ApiKey::try_from(api_key) {
            Ok(ApiKey::ApiVersions) => Step::Pass,
            Ok(ApiKey::SaslHandshake) if !authenticated || reauth => {
                self.handshake(frame.clone(), version, out)
            }
            Ok(ApiKey::SaslAuthenticate) if matches!(self.stage, Stage::Tokens { .. }) => {
                self.authenticate(state, frame.clone(), version, out)
            }
            _ if authenticated => match self.session_ends {
                Some(end) if Instant::now() >= end => Step::Refuse {
                    reason: "the SASL session expired (connections.max.reauth.ms) without \
                             re-authentication"
                        .into(),
                    delay: Duration::ZERO,
                },
                _ => Step::Pass,
            },
            _ => Step::Refuse {
                reason: format!(
                    "{} request before SASL authentication completed",
                    versions::api_name(api_key)
                ),
                delay: Duration::ZERO,
            },
        }
    }

    fn header(frame: &mut Bytes, key: ApiKey, version: i16) -> Result<RequestHeader, Step> {
        let refuse = |reason: String| Step::Refuse {
            reason,
            delay: Duration::ZERO,
        };
        let served =
            versions::served(key as i16).ok_or_else(|| refuse(format!("{key:?} is not served")))?;
        if version < served.min || version > served.max {
            return Err(refuse(format!("{key:?} v{version} is not served")));
        }
        RequestHeader::decode(frame, key.request_header_version(version))
            .map_err(|e| refuse(format!("malformed request header: {e}")))
    }

    fn handshake(&mut self, mut frame: Bytes, version: i16, out: &mut BytesMut) -> Step {
        let key = ApiKey::SaslHandshake;
        let header = match Self::header(&mut frame, key, version) {
            Ok(h) => h,
            Err(step) => return step,
        };
        let Ok(request) = SaslHandshakeRequest::decode(&mut frame, version) else {
            return Step::Refuse {
                reason: "malformed SaslHandshake".into(),
                delay: Duration::ZERO,
            };
        };
        let mut response = SaslHandshakeResponse::default()
            .with_mechanisms(self.settings.names().into_iter().map(str_bytes).collect());
        let reauthenticating = matches!(self.stage, Stage::Authenticated);
        let chosen = self.settings.enabled(request.mechanism.as_str());
        let refusal = match chosen {
            None => Some((
                ErrorCode::UNSUPPORTED_SASL_MECHANISM,
                format!(
                    "client asked for SASL mechanism {}; enabled: {}",
                    request.mechanism.as_str(),
                    self.settings.names().join(",")
                ),
            )),
            Some(m) if reauthenticating && Some(m) != self.mechanism => Some((
                ErrorCode::ILLEGAL_SASL_STATE,
                "re-authentication must use the session's mechanism".to_string(),
            )),
            Some(_) if reauthenticating && version == 0 => Some((
                ErrorCode::ILLEGAL_SASL_STATE,
                "re-authentication needs SaslHandshake v1".to_string(),
            )),
            Some(_) => None,
        };
        if let Some((code, reason)) = refusal {
            response.error_code = code.code();
            // Answered, then closed, as Kafka does.
            respond_ok(out, key, &header, version, &response);
            return Step::Refuse {
                reason,
                delay: Duration::ZERO,
            };
        }
        let Some(mechanism) = chosen else {
            return Step::Refuse {
                reason: "no mechanism".into(),
                delay: Duration::ZERO,
            };
        };
        self.stage = Stage::Tokens {
            mechanism,
            raw: version == 0,
            scram: None,
        };
        if respond_ok(out, key, &header, version, &response) {
            Step::Respond
        } else {
            Step::Refuse {
                reason: "SaslHandshake response could not be encoded".into(),
                delay: Duration::ZERO,
            }
        }
    }

    fn authenticate(
        &mut self,
        state: &BrokerState,
        mut frame: Bytes,
        version: i16,
        out: &mut BytesMut,
    ) -> Step {
        let key = ApiKey::SaslAuthenticate;
        let header = match Self::header(&mut frame, key, version) {
            Ok(h) => h,
            Err(step) => return step,
        };
        let Ok(request) = SaslAuthenticateRequest::decode(&mut frame, version) else {
            return Step::Refuse {
                reason: "malformed SaslAuthenticate".into(),
                delay: Duration::ZERO,
            };
        };
        match self.token(state, &request.auth_bytes) {
            Ok((reply, done)) => {
                let mut response =
                    SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply));
                if done && self.settings.reauth_ms > 0 {
                    response.session_lifetime_ms = self.settings.reauth_ms;
                }
                if respond_ok(out, key, &header, version, &response) {
                    Step::Respond
                } else {
                    Step::Refuse {
                        reason: "SaslAuthenticate response could not be encoded".into(),
                        delay: Duration::ZERO,
                    }
                }
            }
            Err((message, reason)) => {
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(ErrorCode::SASL_AUTHENTICATION_FAILED.code())
                    .with_error_message(Some(str_bytes(message)));
                respond_ok(out, key, &header, version, &response);
                Step::Refuse {
                    reason,
                    delay: self.settings.failure_delay,
                }
            }
        }
    }

    /// A token after a version 0 handshake: a bare frame each way.
    fn raw_token(&mut self, state: &BrokerState, frame: Bytes, out: &mut BytesMut) -> Step {
        match self.token(state, &frame) {
            Ok((reply, _)) => {
                out.clear();
                out.put_i32(reply.len() as i32);
                out.put_slice(&reply);
                Step::Respond
            }
            Err((_, reason)) => {
                out.clear();
                Step::Refuse {
                    reason,
                    delay: self.settings.failure_delay,
                }
            }
        }
    }

    /// Feeds one client token to the mechanism. Ok: the reply and whether
    /// authentication is complete. Err: the client's message and the log's.
    fn token(
        &mut self,
        state: &BrokerState,
        token: &[u8],
    ) -> Result<(Vec<u8>, bool), (String, String)> {
        let Stage::Tokens {
            mechanism, scram, ..
        } = &mut self.stage
        else {
            return Err((
                "unexpected SASL token".into(),
                "SASL token outside an exchange".into(),
            ));
        };
        let mechanism = *mechanism;
        let (user, reply) = match mechanism {
            Mechanism::Plain => match plain(&self.settings.plain_users, token) {
                Ok(user) => (user, Vec::new()),
                Err(reason) => {
                    self.stage = Stage::Handshake;
                    return Err((
                        "Authentication failed: Invalid username or password".into(),
                        format!("PLAIN: {reason}"),
                    ));
                }
            },
            Mechanism::Scram(m) => {
                let failed = |e: &dyn std::fmt::Display| {
                    (
                        format!(
                            "Authentication failed during authentication due to invalid \
                             credentials with SASL mechanism {}",
                            m.name()
                        ),
                        format!("{}: {e}", m.name()),
                    )
                };
                match scram {
                    None => {
                        let mut server = ScramServer::new(m);
                        let image = state.image.load();
                        let nonce = server_nonce();
                        let first = server
                            .client_first(
                                token,
                                |user| {
                                    image
                                        .scram_credentials
                                        .get(user)
                                        .and_then(|c| c.get(m.name()))
                                        .cloned()
                                },
                                &nonce,
                            )
                            .map_err(|e| failed(&e))?;
                        *scram = Some(server);
                        return Ok((first, false));
                    }
                    Some(server) => {
                        let result = server.client_final(token);
                        match result {
                            Ok((user, last)) => (user, last),
                            Err(e) => {
                                self.stage = Stage::Handshake;
                                return Err(failed(&e));
                            }
                        }
                    }
                }
            }
        };
        let principal = format!("User:{user}");
        if let Some(previous) = &self.principal {
            if *previous != principal {
                self.stage = Stage::Handshake;
                return Err((
                    "re-authentication must be as the same user".into(),
                    format!("re-authentication as {principal} on a session of {previous}"),
                ));
            }
        }
        tracing::debug!(listener = %self.settings.listener, %principal, mechanism = mechanism.name(), "SASL authentication succeeded");
        self.principal = Some(principal);
        self.mechanism = Some(mechanism);
        self.session_ends = (self.settings.reauth_ms > 0)
            .then(|| Instant::now() + Duration::from_millis(self.settings.reauth_ms as u64));
        self.stage = Stage::Authenticated;
        Ok((reply, true))
    }
}

fn respond_ok<T: kafka_protocol::protocol::Encodable>(
    out: &mut BytesMut,
    key: ApiKey,
    header: &RequestHeader,
    version: i16,
    body: &T,
) -> bool {
    matches!(
        respond(out, key, header, version, body),
        crate::handlers::Outcome::Respond
    )
}

/// PLAIN's one message: `authzid NUL user NUL password` (RFC 4616).
fn plain(users: &HashMap<String, String>, token: &[u8]) -> Result<String, String> {
    let mut parts = token.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed PLAIN message".into());
    };
    let user = std::str::from_utf8(user).map_err(|_| "user name is not UTF-8".to_string())?;
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(format!("authorization id differs from user {user}"));
    }
    match users.get(user) {
        Some(expected) if constant_time_eq(expected.as_bytes(), password) => Ok(user.to_string()),
        Some(_) => Err(format!("wrong password for user {user}")),
        None => Err(format!("unknown user {user}")),
    }
}

/// 24 random bytes, printable and without commas, as SCRAM nonces must be.
fn server_nonce() -> String {
    use base64::Engine;
    let bytes: [u8; 24] = rand::rng().random();
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_users_are_read_from_kafka_style_lines() {
        let users = jaas_users(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required
               username="admin" password="admin-secret"
               user_admin="admin-secret" user_alice="a l=i;ce";"#,
        )
        .expect("parses");
        assert_eq!(users.len(), 2);
        assert_eq!(users["admin"], "admin-secret");
        assert_eq!(users["alice"], "a l=i;ce");
        assert!(jaas_users(r#"X required user_bob="unterminated"#).is_err());
        assert!(jaas_users("").expect("empty").is_empty());
    }

    #[test]
    fn plain_checks_user_password_and_authzid() {
        let users: HashMap<String, String> = [("alice".to_string(), "secret".to_string())].into();
        assert_eq!(plain(&users, b"\0alice\0secret"), Ok("alice".into()));
        assert_eq!(plain(&users, b"alice\0alice\0secret"), Ok("alice".into()));
        assert!(plain(&users, b"\0alice\0Secret").is_err());
        assert!(plain(&users, b"\0bob\0secret").is_err());
        assert!(plain(&users, b"admin\0alice\0secret").is_err());
        assert!(plain(&users, b"\0alice").is_err());
        assert!(plain(&users, b"\0alice\0secret\0x").is_err());
    }
}
