//! `kraftwerk certs create`: a private CA and certificates signed by it, in
//! the PEM layout Kafka's PEM keystores use, for a local or test cluster
//! (`kraftwerk dev --secure`, `deploy/docker-compose.secure.yml`).
//!
//! Files in `--out`: `ca.pem` (the CA certificate: every truststore),
//! `ca-key.pem` (its key, kept to sign more later) and one `NAME.pem` per
//! node or client: private key, certificate, CA certificate, which is what
//! `ssl.keystore.location` reads. Existing files are kept, so running the
//! command again only adds what is missing. Keys are ECDSA P-256, PKCS#8.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    action: CertsAction,
}

#[derive(Debug, Subcommand)]
enum CertsAction {
    /// Create a CA (unless `--out` has one) and the certificates asked for.
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The directory to write to (created when missing).
    #[arg(long)]
    out: PathBuf,
    /// A node certificate, for servers and for dialling other nodes:
    /// `NAME` or `NAME=HOST,HOST,...` (DNS names or IP addresses it is
    /// reached by; NAME alone when none are given). Repeatable.
    #[arg(long = "node", value_name = "NAME[=HOSTS]")]
    nodes: Vec<String>,
    /// A client certificate with subject `CN=NAME` (mutual TLS). Repeatable.
    #[arg(long = "client", value_name = "NAME")]
    clients: Vec<String>,
    /// Days each new certificate is valid.
    #[arg(long, default_value_t = 825)]
    days: u32,
}

pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    match args.action {
        CertsAction::Create(a) => {
            let nodes = a
                .nodes
                .iter()
                .map(|n| parse_node(n))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for (path, created) in create(&a.out, &nodes, &a.clients, a.days)? {
                println!(
                    "{} {}",
                    if created { "wrote" } else { "kept " },
                    path.display()
                );
            }
            Ok(())
        }
    }
}

/// `NAME` or `NAME=HOST,HOST`.
fn parse_node(spec: &str) -> anyhow::Result<(String, Vec<String>)> {
    let (name, hosts) = match spec.split_once('=') {
        Some((name, hosts)) => (
            name.trim(),
            hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        None => (spec.trim(), vec![spec.trim().to_string()]),
    };
    check_name(name)?;
    if hosts.is_empty() {
        bail!("--node {spec}: no host names after '='");
    }
    Ok((name.to_string(), hosts))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!(
            "'{name}': a certificate name is letters, digits, '-', '_' and '.' (it names the file)"
        );
    }
    if name == "ca" || name == "ca-key" {
        bail!("'{name}' is the CA's file name");
    }
    Ok(())
}

/// Writes what is missing; returns each file with whether it was written.
pub fn create(
    out: &Path,
    nodes: &[(String, Vec<String>)],
    clients: &[String],
    days: u32,
) -> anyhow::Result<Vec<(PathBuf, bool)>> {
    for c in clients {
        check_name(c)?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    let (ca_path, ca_key_path) = (out.join("ca.pem"), out.join("ca-key.pem"));
    let (ca_pem, ca_key) = if ca_path.exists() && ca_key_path.exists() {
        let ca_pem = std::fs::read_to_string(&ca_path)
            .with_context(|| format!("reading {}", ca_path.display()))?;
        let key_pem = std::fs::read_to_string(&ca_key_path)
            .with_context(|| format!("reading {}", ca_key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("reading the CA key {}", ca_key_path.display()))?;
        written.push((ca_path.clone(), false));
        (ca_pem, key)
    } else {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Kraftwerk");
        params
            .distinguished_name
            .push(DnType::CommonName, "Kraftwerk local CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, days.saturating_mul(2));
        let cert = params.self_signed(&key).context("signing the CA")?;
        write(&ca_key_path, &key.serialize_pem(), true)?;
        write(&ca_path, &cert.pem(), false)?;
        written.push((ca_path.clone(), true));
        (cert.pem(), key)
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .with_context(|| format!("reading the CA certificate {}", ca_path.display()))?;
    let leaves = nodes
        .iter()
        .map(|(name, hosts)| (name.as_str(), hosts.as_slice(), true))
        .chain(clients.iter().map(|c| (c.as_str(), &[][..], false)));
    for (name, hosts, is_node) in leaves {
        let path = out.join(format!("{name}.pem"));
        if path.exists() {
            written.push((path, false));
            continue;
        }
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        // Written in this order, RFC 2253 (and so the principal) reads
        // `CN=<name>,O=Kraftwerk`, as an `openssl -subj /O=.../CN=...` does.
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Kraftwerk");
        params.distinguished_name.push(DnType::CommonName, name);
        for host in hosts {
            params.subject_alt_names.push(match host.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    host.clone()
                        .try_into()
                        .with_context(|| format!("'{host}' is not a DNS name"))?,
                ),
            });
        }
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = if is_node {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        validity(&mut params, days);
        let key = KeyPair::generate().context("generating a key")?;
        let cert = params
            .signed_by(&key, &issuer)
            .with_context(|| format!("signing {name}"))?;
        write(
            &path,
            &format!("{}{}{}", key.serialize_pem(), cert.pem(), ca_pem),
            true,
        )?;
        written.push((path, true));
    }
    Ok(written)
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back: clocks of containers and hosts differ a little.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days.max(1)));
}

/// Writes `text` to `path`; a file holding a private key is readable by its
/// owner only.
fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if secret { 0o600 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn node_specs_name_a_file_and_hosts() {
        assert_eq!(
            parse_node("kafka-1=kafka-1,localhost,127.0.0.1").unwrap(),
            (
                "kafka-1".to_string(),
                vec!["kafka-1".into(), "localhost".into(), "127.0.0.1".into()]
            )
        );
        assert_eq!(
            parse_node("node-2").unwrap(),
            ("node-2".to_string(), vec!["node-2".into()])
        );
        assert!(parse_node("../x=h").is_err());
        assert!(parse_node("ca=h").is_err());
        assert!(parse_node("n=").is_err());
    }

    #[test]
    fn certificates_chain_to_the_ca_and_name_their_hosts() {
        let dir = std::env::temp_dir().join(format!("kraftwerk-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nodes = vec![(
            "node-1".to_string(),
            vec!["127.0.0.1".to_string(), "localhost".to_string()],
        )];
        let first = create(&dir, &nodes, &["alice".to_string()], 30).unwrap();
        assert!(first.iter().all(|(_, created)| *created), "{first:?}");
        let roots =
            kraftwerk_tls::roots(&std::fs::read_to_string(dir.join("ca.pem")).unwrap()).unwrap();
        let bundle = std::fs::read_to_string(dir.join("node-1.pem")).unwrap();
        let chain = kraftwerk_tls::certificates(&bundle).unwrap();
        assert_eq!(chain.len(), 2, "certificate, then the CA");
        kraftwerk_tls::private_key(&bundle, None).unwrap();
        // rustls accepts it as a server for both names, with the CA as root.
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            kraftwerk_tls::provider(),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        for name in ["127.0.0.1", "localhost"] {
            verifier
                .verify_server_cert(
                    &chain[0],
                    &[],
                    &rustls_pki_types::ServerName::try_from(name).unwrap(),
                    &[],
                    rustls_pki_types::UnixTime::now(),
                )
                .unwrap();
        }
        assert!(verifier
            .verify_server_cert(
                &chain[0],
                &[],
                &rustls_pki_types::ServerName::try_from("elsewhere").unwrap(),
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .is_err());
        let alice =
            kraftwerk_tls::certificates(&std::fs::read_to_string(dir.join("alice.pem")).unwrap())
                .unwrap();
        assert_eq!(
            kraftwerk_tls::certificate_principal(&alice[0]).as_deref(),
            Some("User:CN=alice,O=Kraftwerk")
        );
        // Again: everything kept, nothing rewritten.
        let again = create(&dir, &nodes, &["alice".to_string()], 30).unwrap();
        assert!(again.iter().all(|(_, created)| !*created), "{again:?}");
        assert_eq!(
            std::fs::read_to_string(dir.join("node-1.pem")).unwrap(),
            bundle
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
