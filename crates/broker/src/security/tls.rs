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

use kraftwerk_types::BrokerConfig;
use parking_lot::RwLock;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

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
        let mut versions = Vec::new();
        for p in get("ssl.enabled.protocols")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match p {
                "TLSv1.2" => versions.push(&rustls::version::TLS12),
                "TLSv1.3" => versions.push(&rustls::version::TLS13),
                other => {
                    return Err(bad(
                        "ssl.enabled.protocols",
                        format!("{other} is not served (TLSv1.2 and TLSv1.3 are)"),
                    ))
                }
            }
        }
        if versions.is_empty() {
            return Err(bad("ssl.enabled.protocols", "no protocol enabled".into()));
        }
        Ok(TlsSettings {
            listener: listener.to_string(),
            keystore,
            key_password: get("ssl.key.password"),
            truststore,
            client_auth,
            versions,
        })
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

    /// Reads the material and builds a rustls server configuration.
    pub fn build(&self) -> Result<Arc<ServerConfig>, SecurityError> {
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
        // ring rather than aws-lc-rs: no C and assembly build in every cold
        // build. rustls marks it deprecated because it offers no
        // post-quantum key exchange (docs/security.md says so).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|e| bad("ssl.enabled.protocols", e.to_string()))?;
        let builder = match (&self.truststore, self.client_auth) {
            (_, ClientAuth::None) | (None, _) => builder.with_no_client_auth(),
            (Some(source), auth) => {
                let pem = match source {
                    Source::File(path) => std::fs::read_to_string(path).map_err(|e| {
                        bad(
                            "ssl.truststore.location",
                            format!("{}: {e}", path.display()),
                        )
                    })?,
                    Source::Inline(certs, _) => certs.clone(),
                };
                let mut roots = RootCertStore::empty();
                for cert in certificates(&pem).map_err(|e| bad("ssl.truststore.location", e))? {
                    roots
                        .add(cert)
                        .map_err(|e| bad("ssl.truststore.location", e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(bad(
                        "ssl.truststore.location",
                        "no CERTIFICATE block found".into(),
                    ));
                }
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
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| bad("ssl.keystore.location", format!("certificate and key: {e}")))?;
        Ok(Arc::new(config))
    }
}

fn pem_blocks(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[start..].find(&end_marker) else {
            break;
        };
        let block_end = start + end + end_marker.len();
        out.push((label, &rest[start..block_end]));
        rest = &rest[block_end..];
    }
    out
}

fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    pem_blocks(pem)
        .into_iter()
        .filter(|(label, _)| *label == "CERTIFICATE")
        .map(|(_, block)| {
            CertificateDer::from_pem_slice(block.as_bytes())
                .map_err(|e| format!("certificate: {e}"))
        })
        .collect()
}

fn private_key(pem: &str, password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    for (label, block) in pem_blocks(pem) {
        match label {
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                return PrivateKeyDer::from_pem_slice(block.as_bytes())
                    .map_err(|e| format!("private key: {e}"));
            }
            "ENCRYPTED PRIVATE KEY" => {
                let password = password.ok_or_else(|| {
                    "the private key is encrypted: set ssl.key.password".to_string()
                })?;
                let (_, doc) = pkcs8::der::Document::from_pem(block)
                    .map_err(|e| format!("encrypted private key: {e}"))?;
                let plain = decrypt_private_key(doc.as_bytes(), password)?;
                return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(plain)));
            }
            _ => {}
        }
    }
    Err("no PRIVATE KEY block found".into())
}

/// `pbeWithSHAAnd3-KeyTripleDES-CBC` (RFC 7292 appendix C).
const PBE_SHA1_3DES: pkcs8::der::oid::ObjectIdentifier =
    pkcs8::der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.3");

/// An encrypted PKCS#8 key: PBES2 (what OpenSSL 3 writes by default), or
/// PKCS#12's SHA-1 and triple-DES scheme (what Java 17, and so Kafka, can
/// read, hence what Kafka deployments have).
fn decrypt_private_key(der: &[u8], password: &str) -> Result<Vec<u8>, String> {
    use pkcs8::der::asn1::OctetStringRef;
    use pkcs8::der::{Decode, Reader, SliceReader};
    use pkcs8::spki::AlgorithmIdentifierRef;
    let wrong = || "ssl.key.password does not decrypt the private key".to_string();
    let (algorithm, data) = SliceReader::new(der)
        .and_then(|mut r| {
            r.sequence(|r| {
                let algorithm = AlgorithmIdentifierRef::decode(r)?;
                let data = OctetStringRef::decode(r)?;
                Ok((algorithm, data))
            })
        })
        .map_err(|e| format!("encrypted private key: {e}"))?;
    if algorithm.oid != PBE_SHA1_3DES {
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der).map_err(|e| {
            format!(
                "encrypted private key (algorithm {}): {e}; PBES2 and \
                 pbeWithSHAAnd3-KeyTripleDES-CBC are read",
                algorithm.oid
            )
        })?;
        return info
            .decrypt(password)
            .map(|doc| doc.as_bytes().to_vec())
            .map_err(|_| wrong());
    }
    let params: pkcs12::pbe_params::Pkcs12PbeParams = algorithm
        .parameters
        .ok_or_else(|| "encrypted private key: no PBE parameters".to_string())?
        .decode_as()
        .map_err(|e| format!("encrypted private key: PBE parameters: {e}"))?;
    let salt = params.salt.as_bytes();
    let derive = |kind, len| {
        pkcs12::kdf::derive_key_utf8::<sha1::Sha1>(password, salt, kind, params.iterations, len)
            .map_err(|e| format!("ssl.key.password: {e}"))
    };
    let key = derive(pkcs12::kdf::Pkcs12KeyType::EncryptionKey, 24)?;
    let iv = derive(pkcs12::kdf::Pkcs12KeyType::Iv, 8)?;
    use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
    cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
        .map_err(|e| format!("encrypted private key: {e}"))?
        .decrypt_padded_vec_mut::<Pkcs7>(data.as_bytes())
        .map_err(|_| wrong())
}

/// The TLS configuration a listener serves now; swapped when its files
/// change.
pub struct TlsCell {
    settings: TlsSettings,
    current: RwLock<(Arc<ServerConfig>, Fingerprint)>,
}

impl TlsCell {
    pub fn new(settings: TlsSettings) -> Result<TlsCell, SecurityError> {
        let fingerprint = settings.fingerprint();
        let config = settings.build()?;
        Ok(TlsCell {
            settings,
            current: RwLock::new((config, fingerprint)),
        })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().0.clone())
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
            Ok(config) => {
                tracing::info!(listener = %self.settings.listener, "TLS certificate files changed; new connections get the new ones");
                *self.current.write() = (config, now);
            }
            Err(e) => {
                tracing::warn!(listener = %self.settings.listener, error = %e, "TLS certificate files changed but do not load; keeping the previous ones");
                // Not retried until the files change again.
                self.current.write().1 = now;
            }
        }
    }
}

/// Kafka's principal for a client certificate: `User:` and the subject's
/// distinguished name as RFC 2253 writes it (most specific part first).
pub fn certificate_principal(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let mut rdns = Vec::new();
    for rdn in parsed.subject().iter_rdn() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type();
            let name = x509_parser::objects::oid2abbrev(oid, registry)
                .map(str::to_string)
                .unwrap_or_else(|_| oid.to_id_string());
            let value = attr.as_str().ok()?;
            parts.push(format!("{name}={}", escape_dn_value(value)));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(format!("User:{}", rdns.join(",")))
}

fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let edge =
            (i == 0 && (c == ' ' || c == '#')) || (i + 1 == value.chars().count() && c == ' ');
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || edge {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_split_by_label() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\
                    -----BEGIN ENCRYPTED PRIVATE KEY-----\nBBBB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let blocks = pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].0, "CERTIFICATE");
        assert_eq!(blocks[1].0, "ENCRYPTED PRIVATE KEY");
        assert!(blocks[1].1.ends_with("-----END ENCRYPTED PRIVATE KEY-----"));
    }

    /// `openssl req -x509 -subj "/C=BR/O=Kraftwerk, Ltda/CN=alice"`;
    /// `openssl x509 -subject -nameopt RFC2253` prints
    /// `CN=alice,O=Kraftwerk\, Ltda,C=BR`.
    const ALICE: &str = "-----BEGIN CERTIFICATE-----
MIIBxjCCAWugAwIBAgIUWQkUnytJcQqgywNwaP5gALXhoKswCgYIKoZIzj0EAwIw
NzELMAkGA1UEBhMCQlIxGDAWBgNVBAoMD0tyYWZ0d2VyaywgTHRkYTEOMAwGA1UE
AwwFYWxpY2UwIBcNMjYxMjA2MTUwODUyWhgPMjEyNjExMTIxNTA4NTJaMDcxCzAJ
BgNVBAYTAkJSMRgwFgYDVQQKDA9LcmFmdHdlcmssIEx0ZGExDjAMBgNVBAMMBWFs
aWNlMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAErNMvyc9jtdxM4oE1zkG0HolA
dM2uRO7mG6AfvjIJErT15iMDkdDOL3TVJgg2D8vPA37S7CaI2xnr9NuTnAbaF6NT
MFEwHQYDVR0OBBYEFPIFDpOjno7+dhuHAXwX2cJBjow+MB8GA1UdIwQYMBaAFPIF
DpOjno7+dhuHAXwX2cJBjow+MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SQAwRgIhAMPBVc+RPc/XwKC7mtCuT385h9Z11EZw1xUVj5yMETrqAiEA1QAJXJWY
5EzgMVaY1nDaZzVTPAFS2nUQd5aWgIp0Ilg=
-----END CERTIFICATE-----";

    #[test]
    fn certificate_principal_is_the_subject_in_rfc_2253_order() {
        let cert = CertificateDer::from_pem_slice(ALICE.as_bytes()).expect("test certificate");
        assert_eq!(
            certificate_principal(&cert).as_deref(),
            Some("User:CN=alice,O=Kraftwerk\\, Ltda,C=BR")
        );
    }

    /// One P-256 key: in the clear, encrypted by `openssl pkcs8 -topk8 -v1
    /// PBE-SHA1-3DES` and by `-v2 aes-256-cbc`, password `kraftwerk`.
    const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgoMouCzZrcTaF6jNa
Fu9fJdM1VrWqosCw093hB5YM90ahRANCAAQQGWkYQb6D9mR9ozEbgfqlWvmY2QU2
fga86J4mkZuhlVvVpa/nzMgiva30/3ic7o9nAK432TkpvX1X6KnofWkq
-----END PRIVATE KEY-----";
    const EC_KEY_PBE_SHA1_3DES: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIGxMBwGCiqGSIb3DQEMAQMwDgQIX7DOXd/n6EECAggABIGQTPRn8FKEKyB3It27
bCakTNNLE57kLbMBV5o0I1b1/mL+1dMo8Gg51UmvG7N1tqrWes6NY9ko2/z0sOpL
eW3d+jKemw52FST+/433CW/JiBCZsQtsxdW1cnKnQcYoGk1QR0qg9beMYROgJRfW
cvkD6/pByQMpLXrKtBwelK3l+PYGrUEgSistWsefIWkh2/2d
-----END ENCRYPTED PRIVATE KEY-----";
    const EC_KEY_PBES2: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAiLI+erYoT9WQICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEDl7UH1PlZXftb+KxKkGFNIEgZC4
37nmrjYeoZeboY7StxV5T9C21/Y/mVI0CIuPnmXh39u04+Fv56ZXk3H+N11tqk/w
Tz4Vg4lkwu4v6yt5TRi2Fa84fvbFPBHKMZymgahx9oc+oizpLkLCXmTQ3og905Om
WwvOjcLgLFBSjm4E74gClkLyoOHnoUUweBY/KzUr1NzwhR69FZ9SHOZr5lpOZdc=
-----END ENCRYPTED PRIVATE KEY-----";

    #[test]
    fn encrypted_keys_of_both_schemes_decrypt() {
        let PrivateKeyDer::Pkcs8(clear) = private_key(EC_KEY, None).expect("clear key") else {
            panic!("a PKCS#8 key");
        };
        for encrypted in [EC_KEY_PBE_SHA1_3DES, EC_KEY_PBES2] {
            let PrivateKeyDer::Pkcs8(key) =
                private_key(encrypted, Some("kraftwerk")).expect("decrypts")
            else {
                panic!("a PKCS#8 key");
            };
            assert_eq!(key.secret_pkcs8_der(), clear.secret_pkcs8_der());
            let err = private_key(encrypted, Some("wrong")).expect_err("wrong password");
            assert!(err.contains("ssl.key.password"), "{err}");
            let err = private_key(encrypted, None).expect_err("no password");
            assert!(err.contains("ssl.key.password"), "{err}");
        }
    }

    #[test]
    fn dn_values_are_escaped_as_rfc_2253_says() {
        assert_eq!(escape_dn_value("alice"), "alice");
        assert_eq!(escape_dn_value("Doe, John"), "Doe\\, John");
        assert_eq!(escape_dn_value("#x "), "\\#x\\ ");
    }

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
