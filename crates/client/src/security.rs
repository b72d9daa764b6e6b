//! TLS and SASL for the client, configured with Kafka's client keys
//! (`security.protocol`, `ssl.truststore.location`, `sasl.mechanism`,
//! `sasl.jaas.config`, ...), as a Java client's properties file has them.
//!
//! TLS is rustls with PEM files (`ssl.truststore.type=PEM`, a client key in
//! the clear or under `ssl.key.password`); the broker's host name is
//! verified against its certificate unless
//! `ssl.endpoint.identification.algorithm` is set empty, as in Kafka. SASL runs after
//! ApiVersions: SaslHandshake v1, then SaslAuthenticate with PLAIN or SCRAM
//! (RFC 5802; the client checks the broker's signature too).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rustls_pki_types::ServerName;
use sha2::{Digest, Sha256, Sha512};

use crate::connection::Connection;
use crate::error::{ClientError, Result};

/// A SASL mechanism the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// How the client secures its connections.
#[derive(Clone)]
pub struct ClientSecurity {
    /// rustls settings when the protocol is SSL or SASL_SSL.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Mechanism, user and password when it is SASL_PLAINTEXT or SASL_SSL.
    sasl: Option<(SaslMechanism, String, String)>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("tls", &self.tls.is_some())
            .field(
                "sasl",
                &self.sasl.as_ref().map(|(m, user, _)| (m.name(), user)),
            )
            .finish()
    }
}

fn config_error(key: &str, reason: impl std::fmt::Display) -> ClientError {
    ClientError::Config(format!("{key}: {reason}"))
}

impl ClientSecurity {
    /// From Kafka client properties; `None` for PLAINTEXT.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<Option<ClientSecurity>> {
        let get = |k: &str| {
            props
                .get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let protocol = get("security.protocol")
            .unwrap_or_else(|| "PLAINTEXT".into())
            .to_ascii_uppercase();
        let (tls, sasl) = match protocol.as_str() {
            "PLAINTEXT" => return Ok(None),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => {
                return Err(config_error(
                    "security.protocol",
                    format!("unknown protocol {other}"),
                ))
            }
        };
        // Set but empty turns the host-name check off, so this key is read
        // as written rather than through `get`.
        let identification = props
            .get("ssl.endpoint.identification.algorithm")
            .map(|v| v.trim());
        let tls = if tls {
            Some(Arc::new(tls_config(&get, identification)?))
        } else {
            None
        };
        let sasl = if sasl {
            let mechanism = match get("sasl.mechanism").as_deref().unwrap_or("GSSAPI") {
                "PLAIN" => SaslMechanism::Plain,
                "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
                "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
                other => {
                    return Err(config_error(
                        "sasl.mechanism",
                        format!(
                            "{other} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 are)"
                        ),
                    ))
                }
            };
            let jaas = get("sasl.jaas.config").ok_or_else(|| {
                config_error(
                    "sasl.jaas.config",
                    "needed for SASL: username=\"...\" password=\"...\"",
                )
            })?;
            let (user, password) = jaas_credentials(&jaas).ok_or_else(|| {
                config_error(
                    "sasl.jaas.config",
                    "no username=\"...\" and password=\"...\" found",
                )
            })?;
            Some((mechanism, user, password))
        } else {
            None
        };
        Ok(Some(ClientSecurity { tls, sasl }))
    }

    /// The same settings authenticating as `user` with `password` (for a
    /// service that signs in on behalf of its callers); `None` when these
    /// settings do not use SASL.
    pub fn with_credentials(&self, user: &str, password: &str) -> Option<ClientSecurity> {
        let (mechanism, ..) = self.sasl.as_ref()?;
        Some(ClientSecurity {
            tls: self.tls.clone(),
            sasl: Some((*mechanism, user.to_string(), password.to_string())),
        })
    }

    /// Whether these settings authenticate with SASL.
    pub fn uses_sasl(&self) -> bool {
        self.sasl.is_some()
    }

    /// Wraps a new TCP stream in TLS when configured.
    pub(crate) async fn wrap(
        &self,
        addr: &str,
        stream: tokio::net::TcpStream,
    ) -> Result<crate::connection::Stream> {
        let Some(tls) = &self.tls else {
            return Ok(crate::connection::Stream::Plain(stream));
        };
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| ClientError::Config(format!("{host} is not a valid server name: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, stream)
            .await
            .map_err(|e| ClientError::Disconnected {
                addr: addr.to_string(),
                reason: format!("TLS handshake failed: {e}"),
            })?;
        Ok(crate::connection::Stream::Tls(Box::new(stream)))
    }

    /// Authenticates a connection whose API versions are negotiated.
    pub(crate) async fn authenticate(&self, connection: &Connection) -> Result<()> {
        let Some((mechanism, user, password)) = &self.sasl else {
            return Ok(());
        };
        let handshake = connection
            .send(
                SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism.name())),
            )
            .await?;
        ClientError::check(handshake.error_code, None)?;
        let exchange = |token: Vec<u8>| async move {
            let response = connection
                .send(SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)))
                .await?;
            ClientError::check(response.error_code, response.error_message.as_ref())?;
            Ok::<Bytes, ClientError>(response.auth_bytes)
        };
        match mechanism {
            SaslMechanism::Plain => {
                let token = format!("\0{user}\0{password}").into_bytes();
                exchange(token).await?;
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let mut scram = ScramClient::new(*mechanism, user, password);
                let first = scram.client_first();
                let server_first = exchange(first).await?;
                let last = scram.client_final(&server_first)?;
                let server_final = exchange(last).await?;
                scram.verify_server_final(&server_final)?;
            }
        }
        Ok(())
    }
}

fn tls_config(
    get: &dyn Fn(&str) -> Option<String>,
    identification: Option<&str>,
) -> Result<rustls::ClientConfig> {
    for key in ["ssl.truststore.type", "ssl.keystore.type"] {
        if let Some(t) = get(key) {
            if !t.eq_ignore_ascii_case("PEM") {
                return Err(config_error(key, format!("{t}: only PEM files are read")));
            }
        }
    }
    let verify_host_name = match identification {
        None => true,
        Some(a) if a.eq_ignore_ascii_case("https") => true,
        Some("") => false,
        Some(other) => {
            return Err(config_error(
                "ssl.endpoint.identification.algorithm",
                format!("{other}: must be https or empty"),
            ))
        }
    };
    let read = |key: &str, path: &str| {
        std::fs::read_to_string(path).map_err(|e| config_error(key, format!("{path}: {e}")))
    };
    let ca_pem = match (
        get("ssl.truststore.location"),
        get("ssl.truststore.certificates"),
    ) {
        (Some(path), _) => read("ssl.truststore.location", &path)?,
        (None, Some(inline)) => inline,
        (None, None) => {
            return Err(config_error(
                "ssl.truststore.location",
                "a PEM file with the CA that signed the brokers' certificates is needed",
            ))
        }
    };
    let roots =
        kraftwerk_tls::roots(&ca_pem).map_err(|e| config_error("ssl.truststore.location", e))?;
    let versions = kraftwerk_tls::protocol_versions(
        &get("ssl.enabled.protocols").unwrap_or_else(|| "TLSv1.2,TLSv1.3".into()),
    )
    .map_err(|e| config_error("ssl.enabled.protocols", e))?;
    let (key_source, chain_pem, key_pem) = match (
        get("ssl.keystore.location"),
        get("ssl.keystore.certificate.chain"),
        get("ssl.keystore.key"),
    ) {
        (Some(path), _, _) => {
            let pem = read("ssl.keystore.location", &path)?;
            ("ssl.keystore.location", Some(pem.clone()), pem)
        }
        (None, Some(chain), Some(key)) => ("ssl.keystore.key", Some(chain), key),
        _ => ("", None, String::new()),
    };
    let identity = match chain_pem {
        None => None,
        Some(chain_pem) => {
            let chain =
                kraftwerk_tls::certificates(&chain_pem).map_err(|e| config_error(key_source, e))?;
            let key = kraftwerk_tls::private_key(&key_pem, get("ssl.key.password").as_deref())
                .map_err(|e| config_error(key_source, e))?;
            Some((chain, key))
        }
    };
    kraftwerk_tls::client_config(roots, identity, &versions, verify_host_name)
        .map_err(|e| config_error("ssl.keystore.location", e))
}

/// `username="..."` and `password="..."` from a JAAS login module line.
fn jaas_credentials(jaas: &str) -> Option<(String, String)> {
    let value = |name: &str| {
        let start = jaas.find(&format!("{name}="))? + name.len() + 1;
        let rest = jaas[start..].trim_start();
        match rest.strip_prefix('"') {
            Some(quoted) => quoted.find('"').map(|end| quoted[..end].to_string()),
            None => Some(
                rest.split(|c: char| c.is_whitespace() || c == ';')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
        }
    };
    Some((value("username")?, value("password")?))
}

/// The client's side of one SCRAM exchange.
struct ScramClient {
    mechanism: SaslMechanism,
    user: String,
    password: String,
    nonce: String,
    client_first_bare: String,
    server_signature: Vec<u8>,
}

impl ScramClient {
    fn new(mechanism: SaslMechanism, user: &str, password: &str) -> Self {
        use rand::Rng;
        let bytes: [u8; 24] = rand::rng().random();
        ScramClient {
            mechanism,
            user: user.replace('=', "=3D").replace(',', "=2C"),
            password: password.to_string(),
            nonce: base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes),
            client_first_bare: String::new(),
            server_signature: Vec::new(),
        }
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self.mechanism {
            SaslMechanism::ScramSha512 => {
                let mut mac =
                    Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            _ => {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn client_first(&mut self) -> Vec<u8> {
        self.client_first_bare = format!("n={},r={}", self.user, self.nonce);
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>> {
        let bad = |what: &str| ClientError::Protocol(format!("SCRAM server-first message: {what}"));
        let text = std::str::from_utf8(server_first).map_err(|_| bad("not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in text.split(',') {
            if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v.to_string());
            } else if let Some(v) = attr.strip_prefix("s=") {
                salt = Some(B64.decode(v).map_err(|_| bad("salt is not base64"))?);
            } else if let Some(v) = attr.strip_prefix("i=") {
                iterations = Some(v.parse::<u32>().map_err(|_| bad("bad iteration count"))?);
            }
        }
        let nonce = nonce.ok_or_else(|| bad("no nonce"))?;
        if !nonce.starts_with(&self.nonce) {
            return Err(bad("the nonce does not extend ours"));
        }
        let salt = salt.ok_or_else(|| bad("no salt"))?;
        let iterations = iterations.ok_or_else(|| bad("no iteration count"))?;
        let scram = match self.mechanism {
            SaslMechanism::ScramSha512 => crate::users::ScramMechanism::Sha512,
            _ => crate::users::ScramMechanism::Sha256,
        };
        let salted = scram.salted_password(&self.password, &salt, iterations);
        let client_key = self.hmac(&salted, b"Client Key");
        let stored_key = match self.mechanism {
            SaslMechanism::ScramSha512 => Sha512::digest(&client_key).to_vec(),
            _ => Sha256::digest(&client_key).to_vec(),
        };
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = self.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = self.hmac(&salted, b"Server Key");
        self.server_signature = self.hmac(&server_key, auth_message.as_bytes());
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    fn verify_server_final(&self, server_final: &[u8]) -> Result<()> {
        let text = String::from_utf8_lossy(server_final);
        let verifier = text
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v.trim()).ok())
            .ok_or_else(|| ClientError::Protocol(format!("SCRAM server-final message: {text}")))?;
        if verifier != self.server_signature {
            return Err(ClientError::Protocol(
                "the broker's SCRAM signature does not match: it does not know the password".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_lines_give_user_and_password() {
        assert_eq!(
            jaas_credentials(
                r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="a b;c";"#
            ),
            Some(("alice".into(), "a b;c".into()))
        );
        assert_eq!(
            jaas_credentials("X required username=bob password=pw;"),
            Some(("bob".into(), "pw".into()))
        );
        assert_eq!(jaas_credentials("X required username=\"bob\";"), None);
    }

    #[test]
    fn scram_client_matches_rfc_7677() {
        let mut c = ScramClient::new(SaslMechanism::ScramSha256, "user", "pencil");
        c.nonce = "rOprNGfwEbeRWgbNEkqO".into();
        assert_eq!(
            c.client_first(),
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO".to_vec()
        );
        let last = c
            .client_final(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .expect("final");
        assert_eq!(
            String::from_utf8_lossy(&last),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("server signature");
        assert!(c.verify_server_final(b"v=AAAA").is_err());
    }
}
