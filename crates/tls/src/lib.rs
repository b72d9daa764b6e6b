//! Layer 0: TLS material as Kafka configures it, for every Kraftwerk
//! endpoint that speaks TLS (Kafka listeners, inter-node gRPC, the client
//! and CLI).
//!
//! PEM only: certificate chains, private keys in the clear or encrypted
//! (PBES2, and PKCS#12's SHA-1/3DES scheme that Kafka on Java 17 writes),
//! CA bundles; rustls configurations built from them with the ring
//! provider; and Kafka's principal name for a certificate.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

/// The crypto provider of every TLS endpoint: ring rather than aws-lc-rs,
/// so that a cold build compiles no C and assembly. rustls marks it
/// deprecated because it offers no post-quantum key exchange
/// (docs/security.md says so).
pub fn provider() -> Arc<CryptoProvider> {
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

/// A trust store from the CERTIFICATE blocks of a PEM text.
pub fn roots(pem: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem)? {
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(roots)
}

/// The TLS versions of Kafka's `ssl.enabled.protocols` (`TLSv1.2,TLSv1.3`;
/// older ones are not spoken).
pub fn protocol_versions(list: &str) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let mut versions = Vec::new();
    for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match p {
            "TLSv1.2" => versions.push(&rustls::version::TLS12),
            "TLSv1.3" => versions.push(&rustls::version::TLS13),
            other => return Err(format!("{other}: only TLSv1.2 and TLSv1.3 are spoken")),
        }
    }
    if versions.is_empty() {
        return Err("no protocol enabled".into());
    }
    Ok(versions)
}

/// The certificate chain and key a TLS endpoint presents.
pub type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A client configuration: servers are trusted when `roots` sign their
/// certificate, and, when `verify_host_name` (Kafka's
/// `ssl.endpoint.identification.algorithm=https`), when it names the host
/// dialled. `identity` is presented when a server asks for one.
pub fn client_config(
    roots: RootCertStore,
    identity: Option<Identity>,
    versions: &[&'static SupportedProtocolVersion],
    verify_host_name: bool,
) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?;
    let builder = if verify_host_name {
        builder.with_root_certificates(roots)
    } else {
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyHostName(inner)))
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("certificate and key: {e}")),
    }
}

/// Checks a server's chain like WebPKI, but not the name in it: what
/// `ssl.endpoint.identification.algorithm=` (empty) asks for.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The PEM blocks of a text as (label, whole block), in order.
pub fn pem_blocks(text: &str) -> Vec<(&str, &str)> {
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

/// Every CERTIFICATE block of a PEM text, in order.
pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    pem_blocks(pem)
        .into_iter()
        .filter(|(label, _)| *label == "CERTIFICATE")
        .map(|(_, block)| {
            CertificateDer::from_pem_slice(block.as_bytes())
                .map_err(|e| format!("certificate: {e}"))
        })
        .collect()
}

/// The first private key of a PEM text: in the clear (PKCS#8, PKCS#1 or
/// SEC1), or encrypted PKCS#8 opened with `password` (`ssl.key.password`).
pub fn private_key(pem: &str, password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
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
                // A wrong password now and then still yields valid padding
                // (about one time in 256); what it gives is then no key.
                if pkcs8::PrivateKeyInfo::try_from(plain.as_slice()).is_err() {
                    return Err(WRONG_KEY_PASSWORD.to_string());
                }
                return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(plain)));
            }
            _ => {}
        }
    }
    Err("no PRIVATE KEY block found".into())
}

const WRONG_KEY_PASSWORD: &str = "ssl.key.password does not decrypt the private key";

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
    let wrong = || WRONG_KEY_PASSWORD.to_string();
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

/// Kafka's principal for a client certificate: `User:` and the subject's
/// distinguished name as RFC 2253 writes it (most specific part first).
pub fn certificate_principal(cert: &CertificateDer<'_>) -> Option<String> {
    certificate_subject(cert).map(|dn| format!("User:{dn}"))
}

/// A certificate's subject as RFC 2253 writes it (most specific part first).
pub fn certificate_subject(cert: &CertificateDer<'_>) -> Option<String> {
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
    Some(rdns.join(","))
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

/// Kafka's `ssl.principal.mapping.rules`: how a certificate subject becomes
/// a user name. A list of `RULE:pattern/replacement/` rules (optionally
/// ending `L` or `U` to lower- or upper-case the result) and `DEFAULT`
/// (the subject itself), separated by commas or new lines; the first rule
/// whose pattern matches the whole subject decides. When none does, the
/// client is not authenticated, as in Kafka.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<MappingRule>,
}

#[derive(Debug, Clone)]
enum MappingRule {
    Default,
    Replace {
        pattern: regex::Regex,
        replacement: String,
        case: Option<Case>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Lower,
    Upper,
}

impl PrincipalMapper {
    /// The mapper of Kafka's default rules (`DEFAULT`).
    pub fn default_rules() -> PrincipalMapper {
        PrincipalMapper {
            rules: vec![MappingRule::Default],
        }
    }

    pub fn parse(text: &str) -> Result<PrincipalMapper, String> {
        let mut rules = Vec::new();
        let mut rest = text;
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
            if rest.is_empty() {
                break;
            }
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(MappingRule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = until_slash(after)
                    .ok_or_else(|| format!("'{rest}': a rule is RULE:pattern/replacement/"))?;
                let (replacement, after) = until_slash(after)
                    .ok_or_else(|| format!("'{rest}': a rule is RULE:pattern/replacement/"))?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Some(Case::Lower), &after[1..]),
                    Some('U') => (Some(Case::Upper), &after[1..]),
                    _ => (None, after),
                };
                let pattern = regex::Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("pattern '{pattern}': {e}"))?;
                rules.push(MappingRule::Replace {
                    pattern,
                    replacement: rust_replacement(replacement),
                    case,
                });
                rest = after;
            } else {
                return Err(format!(
                    "'{}': each rule is DEFAULT or RULE:pattern/replacement/[LU]",
                    rest.split([',', '\n']).next().unwrap_or(rest)
                ));
            }
            // Whatever follows a rule up to the next separator is ignored,
            // as Kafka does.
            rest = match rest.find([',', '\n']) {
                Some(at) => &rest[at..],
                None => "",
            };
        }
        if rules.is_empty() {
            return Err("no rule given (Kafka's default is DEFAULT)".into());
        }
        Ok(PrincipalMapper { rules })
    }

    /// The user name for a certificate subject, or None when no rule applies.
    pub fn name(&self, subject: &str) -> Option<String> {
        for rule in &self.rules {
            match rule {
                MappingRule::Default => return Some(subject.to_string()),
                MappingRule::Replace {
                    pattern,
                    replacement,
                    case,
                } => {
                    if !pattern.is_match(subject) {
                        continue;
                    }
                    let name = pattern.replace(subject, replacement.as_str()).into_owned();
                    return Some(match case {
                        Some(Case::Lower) => name.to_lowercase(),
                        Some(Case::Upper) => name.to_uppercase(),
                        None => name,
                    });
                }
            }
        }
        None
    }
}

/// The text up to the first `/` not escaped by a backslash, and what
/// follows that slash. Escapes are kept: the regex reads them.
fn until_slash(text: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '/' => return Some((&text[..i], &text[i + 1..])),
            _ => {}
        }
    }
    None
}

/// A Java replacement string (`$1`, `\$` for a dollar) as the regex crate
/// writes it (`${1}`, `$$`).
fn rust_replacement(java: &str) -> String {
    let mut out = String::with_capacity(java.len() + 4);
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{digits}}}"));
                }
            }
            other => out.push(other),
        }
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

    /// Among a thousand wrong passwords some decrypt to valid padding; each
    /// must still be reported as the wrong password, not as a bad key.
    #[test]
    fn every_wrong_password_is_reported_as_such() {
        for encrypted in [EC_KEY_PBE_SHA1_3DES, EC_KEY_PBES2] {
            for n in 0..1000 {
                let err = private_key(encrypted, Some(&format!("wrong-{n}")))
                    .expect_err("wrong password");
                assert_eq!(err, WRONG_KEY_PASSWORD, "password wrong-{n}");
            }
        }
    }

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
    fn principal_mapping_rules_read_as_kafka_documents_them() {
        let mapper = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\n\
             RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\n\
             RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, DEFAULT",
        )
        .expect("Kafka's documented example");
        let cases = [
            (
                "CN=kafka-server1,OU=ServiceUsers,O=Org,C=BR",
                "kafka-server1",
            ),
            (
                "CN=Duke,OU=JavaSoft,O=Sun Microsystems,L=Sao Paulo,ST=SP,C=BR",
                "duke@javasoft",
            ),
            ("OU=x,CN=alice.b,O=y", "ALICE.B"),
            ("O=Kraftwerk", "O=Kraftwerk"),
        ];
        for (subject, name) in cases {
            assert_eq!(mapper.name(subject).as_deref(), Some(name), "{subject}");
        }
        let strict =
            PrincipalMapper::parse("RULE:^CN=([a-z]+),O=Kraftwerk$/$1/").expect("one rule");
        assert_eq!(
            strict.name("CN=alice,O=Kraftwerk").as_deref(),
            Some("alice")
        );
        assert_eq!(strict.name("CN=alice,O=Elsewhere"), None);
        // An escaped slash belongs to the pattern; \$ is a literal dollar.
        let escaped = PrincipalMapper::parse("RULE:^CN=a\\/b$/x\\$y/").expect("escapes");
        assert_eq!(escaped.name("CN=a/b").as_deref(), Some("x$y"));
        for bad in ["", "RULE:^CN=(.*)$", "RULE:(/x/", "CN=alice"] {
            assert!(PrincipalMapper::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            PrincipalMapper::default_rules().name("CN=a,O=b").as_deref(),
            Some("CN=a,O=b")
        );
    }
}
