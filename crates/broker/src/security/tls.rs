//! TLS on a Kafka listener, with rustls and Kafka's PEM keystore keys.
//!
//! A listener's settings come from the `ssl.*` keys, each of which may be
//! given for one listener as `listener.name.<name>.ssl.*`. The certificate
//! chain and key are a PEM file (`ssl.keystore.location`, key encrypted
//! under `ssl.key.password` or not) or inline PEM
//! (`ssl.keystore.certificate.chain`, `ssl.keystore.key`); the CAs trusted
//! for client certificates likewise (`ssl.truststore.location`,
//! `ssl.truststore.certificates`). Files are fingerprinted and read again
//! when they change, so a renewed certificate is served to new connections
//! without a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use kraftwerk_tls::{certificates, private_key};
use kraftwerk_types::BrokerConfig;
use parking_lot::RwLock;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use super::SecurityError;

/// Whether and how clients present certificates (`ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// Where one listener's TLS material comes from.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    listener: String,
    keystore: Source,
    key_password: Option<String>,
    truststore: Option<Source>,
    client_auth: ClientAuth,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    /// A listener between nodes (gRPC): HTTP/2 by ALPN on both sides.
    grpc: bool,
    /// Whether a server this node dials must name the host dialled
    /// (`ssl.endpoint.identification.algorithm`, `https` by default).
    verify_host_name: bool,
}

/// Each file with its modification time and length, when it can be read.
type Fingerprint = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    /// Inline PEM text: (certificates, key) for a keystore, certificates
    /// for a truststore.
    Inline(String, String),
}

impl TlsSettings {
    pub fn from_config(
        config: &BrokerConfig,
        listener: &str,
    ) -> Result<TlsSettings, SecurityError> {
        let get = |key: &str| {
            config
                .listener_value(listener, key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let bad = |key: &str, reason: String| SecurityError::Config {
            listener: listener.to_string(),
            key: key.to_string(),
            reason,
        };
        for key in ["ssl.keystore.type", "ssl.truststore.type"] {
            if let Some(t) = get(key) {
                if !t.eq_ignore_ascii_case("PEM") {
                    return Err(bad(
                        key,
                        format!("{t} is not served; Kraftwerk reads PEM files (set {key}=PEM)"),
                    ));
                }
            }
        }
        let keystore = match (
            get("ssl.keystore.location"),
            get("ssl.keystore.certificate.chain"),
            get("ssl.keystore.key"),
        ) {
            (Some(path), None, None) => Source::File(PathBuf::from(path)),
            (None, Some(chain), Some(key)) => Source::Inline(chain, key),
            (None, None, None) => {
                return Err(bad(
                    "ssl.keystore.location",
                    "a TLS listener needs a certificate and key: set ssl.keystore.location \
                     (PEM) or ssl.keystore.certificate.chain and ssl.keystore.key"
                        .into(),
                ))
            }
            _ => {
                return Err(bad(
                    "ssl.keystore.location",
                    "give either ssl.keystore.location or both ssl.keystore.certificate.chain \
                     and ssl.keystore.key"
                        .into(),
                ))
            }
        };
        let truststore = match (
            get("ssl.truststore.location"),
            get("ssl.truststore.certificates"),
        ) {
            (Some(path), None) => Some(Source::File(PathBuf::from(path))),
            (None, Some(certs)) => Some(Source::Inline(certs, String::new())),
            (None, None) => None,
            _ => {
                return Err(bad(
                    "ssl.truststore.location",
                    "give either ssl.truststore.location or ssl.truststore.certificates".into(),
                ))
            }
        };
        let client_auth = match get("ssl.client.auth").as_deref().unwrap_or("none") {
            "none" => ClientAuth::None,
            "requested" => ClientAuth::Requested,
            "required" => ClientAuth::Required,
            other => {
                return Err(bad(
                    "ssl.client.auth",
                    format!("{other}: must be none, requested or required"),
                ))
            }
        };
        if client_auth != ClientAuth::None && truststore.is_none() {
            return Err(bad(
                "ssl.truststore.location",
                "ssl.client.auth asks for client certificates: name the CAs that sign them".into(),
            ));
        }
        let versions =
            kraftwerk_tls::protocol_versions(&get("ssl.enabled.protocols").unwrap_or_default())
                .map_err(|e| bad("ssl.enabled.protocols", e))?;
        // Empty turns the host-name check off, as in Kafka.
        const ENDPOINT_CHECK: &str = "ssl.endpoint.identification.algorithm";
        let verify_host_name = match config.listener_value(listener, ENDPOINT_CHECK) {
            None => true,
            Some(a) if a.trim().is_empty() => false,
            Some(a) if a.trim().eq_ignore_ascii_case("https") => true,
            Some(other) => {
                return Err(bad(
                    ENDPOINT_CHECK,
                    format!("{other}: must be https or empty"),
                ))
            }
        };
        Ok(TlsSettings {
            listener: listener.to_string(),
            keystore,
            key_password: get("ssl.key.password"),
            truststore,
            client_auth,
            versions,
            grpc: false,
            verify_host_name,
        })
    }

    /// The settings of a listener between nodes (the controller's,
    /// `REPLICATION`) whose protocol is SSL. TLS there is always mutual:
    /// those RPCs (Raft, metadata writes, follower fetches) carry no other
    /// authentication, so a peer proves itself with a certificate that the
    /// truststore's CAs signed, and checks the other side's the same way.
    pub fn for_node(config: &BrokerConfig, listener: &str) -> Result<TlsSettings, SecurityError> {
        let mut settings = TlsSettings::from_config(config, listener)?;
        if settings.truststore.is_none() {
            return Err(SecurityError::Config {
                listener: listener.to_string(),
                key: "ssl.truststore.location".into(),
                reason: "TLS between nodes is mutual: name the CAs that sign the nodes' \
                         certificates"
                    .into(),
            });
        }
        settings.client_auth = ClientAuth::Required;
        settings.grpc = true;
        Ok(settings)
    }

    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }

    /// The files behind these settings, with what they look like now.
    fn fingerprint(&self) -> Fingerprint {
        [Some(&self.keystore), self.truststore.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|s| match s {
                Source::File(p) => Some(p.clone()),
                Source::Inline(..) => None,
            })
            .map(|p| {
                let seen = std::fs::metadata(&p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())));
                (p, seen)
            })
            .collect()
    }

    /// Reads the material and builds the rustls configurations: the
    /// server's, and the client's this node dials other nodes with.
    pub fn build(&self) -> Result<Built, SecurityError> {
        let bad = |key: &str, reason: String| SecurityError::Config {
            listener: self.listener.clone(),
            key: key.to_string(),
            reason,
        };
        let (chain_pem, key_pem) = match &self.keystore {
            Source::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    bad("ssl.keystore.location", format!("{}: {e}", path.display()))
                })?;
                (text.clone(), text)
            }
            Source::Inline(chain, key) => (chain.clone(), key.clone()),
        };
        let chain = certificates(&chain_pem).map_err(|e| bad("ssl.keystore.location", e))?;
        if chain.is_empty() {
            return Err(bad(
                "ssl.keystore.location",
                "no CERTIFICATE block found".into(),
            ));
        }
        let key_source = match &self.keystore {
            Source::File(_) => "ssl.keystore.location",
            Source::Inline(..) => "ssl.keystore.key",
        };
        let key =
            private_key(&key_pem, self.key_password.as_deref()).map_err(|e| bad(key_source, e))?;
        let provider = kraftwerk_tls::provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|e| bad("ssl.enabled.protocols", e.to_string()))?;
        let roots = match &self.truststore {
            None => None,
            Some(source) => {
                let pem = match source {
                    Source::File(path) => std::fs::read_to_string(path).map_err(|e| {
                        bad(
                            "ssl.truststore.location",
                            format!("{}: {e}", path.display()),
                        )
                    })?,
                    Source::Inline(certs, _) => certs.clone(),
                };
                Some(kraftwerk_tls::roots(&pem).map_err(|e| bad("ssl.truststore.location", e))?)
            }
        };
        let builder = match (&roots, self.client_auth) {
            (_, ClientAuth::None) | (None, _) => builder.with_no_client_auth(),
            (Some(roots), auth) => {
                let roots = roots.clone();
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if auth == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| bad("ssl.truststore.location", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server = builder
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| bad("ssl.keystore.location", format!("certificate and key: {e}")))?;
        let mut client = kraftwerk_tls::client_config(
            roots.unwrap_or_else(rustls::RootCertStore::empty),
            Some((chain, key)),
            &self.versions,
            self.verify_host_name,
        )
        .map_err(|e| bad("ssl.keystore.location", e))?;
        if self.grpc {
            server.alpn_protocols = vec![b"h2".to_vec()];
            client.alpn_protocols = vec![b"h2".to_vec()];
        }
        Ok(Built {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// One listener's rustls configurations.
#[derive(Debug, Clone)]
pub struct Built {
    pub server: Arc<ServerConfig>,
    /// What this node presents and trusts when it dials a listener of the
    /// same name on another node (used for the listeners between nodes).
    pub client: Arc<rustls::ClientConfig>,
}

/// The TLS configuration a listener serves now; swapped when its files
/// change.
#[derive(Debug)]
pub struct TlsCell {
    settings: TlsSettings,
    current: RwLock<(Built, Fingerprint)>,
}

impl TlsCell {
    pub fn new(settings: TlsSettings) -> Result<TlsCell, SecurityError> {
        let fingerprint = settings.fingerprint();
        let built = settings.build()?;
        Ok(TlsCell {
            settings,
            current: RwLock::new((built, fingerprint)),
        })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().0.server.clone())
    }

    pub fn client_auth(&self) -> ClientAuth {
        self.settings.client_auth()
    }

    /// Reads the files again if they changed since they were last read.
    /// A change that does not load keeps the previous configuration.
    pub fn reload_if_changed(&self) {
        let now = self.settings.fingerprint();
        if now == self.current.read().1 {
            return;
        }
        match self.settings.build() {
            Ok(built) => {
                tracing::info!(listener = %self.settings.listener, "TLS certificate files changed; new connections get the new ones");
                *self.current.write() = (built, now);
            }
            Err(e) => {
                tracing::warn!(listener = %self.settings.listener, error = %e, "TLS certificate files changed but do not load; keeping the previous ones");
                // Not retried until the files change again.
                self.current.write().1 = now;
            }
        }
    }
}

impl kraftwerk_rpc::NodeTls for TlsCell {
    fn server(&self) -> Arc<ServerConfig> {
        self.current.read().0.server.clone()
    }

    fn client(&self) -> Arc<rustls::ClientConfig> {
        self.current.read().0.client.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_key_that_is_missing_or_unserved() {
        let config = |pairs: &[(&str, &str)]| {
            let mut raw: std::collections::BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            raw.insert("listeners".into(), "SSL://127.0.0.1:9093".into());
            BrokerConfig::from_map(raw).expect("valid broker config")
        };
        let err = TlsSettings::from_config(&config(&[]), "SSL").expect_err("no keystore");
        assert!(err.to_string().contains("ssl.keystore.location"), "{err}");
        let err = TlsSettings::from_config(
            &config(&[
                ("ssl.keystore.type", "JKS"),
                ("ssl.keystore.location", "/x"),
            ]),
            "SSL",
        )
        .expect_err("JKS");
        assert!(err.to_string().contains("ssl.keystore.type"), "{err}");
        let err = TlsSettings::from_config(
            &config(&[
                ("ssl.keystore.location", "/x"),
                ("listener.name.ssl.ssl.client.auth", "required"),
            ]),
            "SSL",
        )
        .expect_err("client auth without truststore");
        assert!(err.to_string().contains("ssl.truststore.location"), "{err}");
        let err = TlsSettings::from_config(
            &config(&[
                ("ssl.keystore.location", "/x"),
                ("ssl.enabled.protocols", "TLSv1.1"),
            ]),
            "SSL",
        )
        .expect_err("TLS 1.1");
        assert!(err.to_string().contains("ssl.enabled.protocols"), "{err}");
        let ok =
            TlsSettings::from_config(&config(&[("ssl.keystore.location", "/missing.pem")]), "SSL")
                .expect("settings");
        let err = ok.build().expect_err("missing file");
        assert!(err.to_string().contains("/missing.pem"), "{err}");
    }
}
