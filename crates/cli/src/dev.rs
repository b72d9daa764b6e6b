//! `kraftwerk dev --brokers N`: a local cluster of N combined
//! (broker + controller) nodes as separate processes, the quickest way to try
//! a real cluster. Node n listens on 127.0.0.1:(9091+n) for Kafka clients and
//! 127.0.0.1:(9191+n) for the controller quorum.
//!
//! With `--secure` the same cluster runs as one exposed to others should:
//! clients on SASL_SSL (PLAIN and SCRAM), mutual TLS between nodes (the
//! controller and replication listeners), the StandardAuthorizer with an
//! `admin` super user. A CA and node certificates are made under
//! `<data-dir>/certs` (`kraftwerk certs`), and `<data-dir>/client.properties`
//! holds the admin's client settings, for `--command-config` of Kraftwerk's
//! and Kafka's tools. Both are kept across runs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

/// How long stopping nodes may take before they are killed.
const STOP_WAIT: Duration = Duration::from_secs(40);

#[derive(Debug, Args)]
pub struct DevArgs {
    /// How many nodes (each broker and controller).
    #[arg(long, default_value_t = 3)]
    brokers: u16,
    /// Where node configs, data and logs go.
    #[arg(long, default_value = "./data/dev-cluster")]
    data_dir: PathBuf,
    /// Kafka port of node 1; node n uses base + n - 1.
    #[arg(long, default_value_t = 9092)]
    base_port: u16,
    /// Controller port of node 1; node n uses base + n - 1.
    #[arg(long, default_value_t = 9192)]
    controller_base_port: u16,
    /// HTTP port (`/metrics`) of node 1; node n uses base + n - 1.
    #[arg(long, default_value_t = 9080)]
    http_base_port: u16,
    /// SASL_SSL for clients, mutual TLS between nodes, ACLs with an admin
    /// super user; certificates and client settings under the data dir.
    #[arg(long)]
    secure: bool,
}

/// The user `--secure` makes a super user.
const ADMIN: &str = "admin";
const AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

/// The settings `--secure` adds to node `n` (its listeners are rewritten
/// by the caller).
pub fn secure_properties(n: u16, certs: &std::path::Path, admin_password: &str) -> String {
    let jaas = format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required \
         user_{ADMIN}=\"{admin_password}\";"
    );
    format!(
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL,REPLICATION:SSL\n\
         ssl.keystore.location={keystore}\n\
         ssl.truststore.location={ca}\n\
         sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512\n\
         listener.name.sasl_ssl.plain.sasl.jaas.config={jaas}\n\
         authorizer.class.name={AUTHORIZER}\n\
         super.users=User:{ADMIN}\n",
        keystore = certs.join(format!("node-{n}.pem")).display(),
        ca = certs.join("ca.pem").display(),
    )
}

/// The admin's client settings, as Kafka's tools read them.
pub fn client_properties(certs: &std::path::Path, admin_password: &str) -> String {
    format!(
        "security.protocol=SASL_SSL\n\
         sasl.mechanism=PLAIN\n\
         sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
         username=\"{ADMIN}\" password=\"{admin_password}\";\n\
         ssl.truststore.type=PEM\n\
         ssl.truststore.location={ca}\n",
        ca = certs.join("ca.pem").display(),
    )
}

/// The admin password of an earlier `--secure` run, else a new one.
fn admin_password(client_properties: &std::path::Path) -> String {
    let earlier = std::fs::read_to_string(client_properties)
        .ok()
        .and_then(|text| {
            let at = text.find("password=\"")? + "password=\"".len();
            let rest = &text[at..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .filter(|p| !p.is_empty());
    earlier.unwrap_or_else(|| {
        use rand::distr::{Alphanumeric, SampleString};
        Alphanumeric.sample_string(&mut rand::rng(), 24)
    })
}

/// The server.properties of node `n` of a local cluster.
pub fn node_properties(
    n: u16,
    count: u16,
    kafka_base: u16,
    controller_base: u16,
    http_base: u16,
    data_dir: &std::path::Path,
) -> String {
    let voters: Vec<String> = (1..=count)
        .map(|i| format!("{i}@127.0.0.1:{}", controller_base + i - 1))
        .collect();
    format!(
        "node.id={n}\nprocess.roles=broker,controller\nlisteners=PLAINTEXT://127.0.0.1:{kp},CONTROLLER://127.0.0.1:{cp}\nadvertised.listeners=PLAINTEXT://127.0.0.1:{kp}\ncontroller.quorum.voters={voters}\nlog.dirs={dir}\nnum.partitions=1\ndefault.replication.factor={rf}\noffsets.topic.replication.factor={rf}\nkraftwerk.http.listener=127.0.0.1:{hp}\n",
        kp = kafka_base + n - 1,
        hp = http_base + n - 1,
        cp = controller_base + n - 1,
        voters = voters.join(","),
        dir = data_dir.join(format!("node-{n}")).display(),
        rf = count.min(3),
    )
}

fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    if args.brokers == 0 || args.brokers > 9 {
        bail!("--brokers must be between 1 and 9");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let exe = std::env::current_exe().context("locating the kraftwerk binary")?;
    let certs = data_dir.join("certs");
    let client_config = data_dir.join("client.properties");
    let password = admin_password(&client_config);
    if args.secure {
        let nodes: Vec<(String, Vec<String>)> = (1..=args.brokers)
            .map(|n| {
                (
                    format!("node-{n}"),
                    vec!["127.0.0.1".to_string(), "localhost".to_string()],
                )
            })
            .collect();
        crate::certs::create(&certs, &nodes, &[], 825)?;
        write_private(&client_config, &client_properties(&certs, &password))?;
    }
    let mut children = Vec::new();
    for n in 1..=args.brokers {
        let config = data_dir.join(format!("node-{n}.properties"));
        let mut properties = node_properties(
            n,
            args.brokers,
            args.base_port,
            args.controller_base_port,
            args.http_base_port,
            &data_dir,
        );
        if args.secure {
            properties = properties.replace("PLAINTEXT://", "SASL_SSL://")
                + &secure_properties(n, &certs, &password);
        }
        write_private(&config, &properties)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join(format!("node-{n}.log")))?;
        let child = Command::new(&exe)
            .arg("server")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node {n}"))?;
        children.push((n, config, child));
    }
    let bootstrap: Vec<String> = (0..args.brokers)
        .map(|i| format!("127.0.0.1:{}", args.base_port + i))
        .collect();
    println!(
        "Kraftwerk dev cluster: {} nodes (broker + controller each)",
        args.brokers
    );
    println!("  bootstrap servers: {}", bootstrap.join(","));
    let command_config = if args.secure {
        println!(
            "  secure: SASL_SSL (PLAIN, SCRAM) for clients, mutual TLS between nodes, ACLs; \
             super user {ADMIN}"
        );
        println!("  CA certificate:    {}", certs.join("ca.pem").display());
        println!("  admin client:      {}", client_config.display());
        format!(" --command-config {}", client_config.display())
    } else {
        String::new()
    };
    for (n, config, child) in &children {
        println!(
            "  node {n}: pid {}  config {}  log {}",
            child.id(),
            config.display(),
            data_dir.join(format!("node-{n}.log")).display()
        );
    }
    println!("Stop one node:    kill <pid>   (SIGTERM: controlled shutdown; kill -9 to crash it)");
    println!(
        "Restart it:       {} server --config {}",
        exe.display(),
        data_dir.join("node-N.properties").display()
    );
    println!(
        "Inspect:          kraftwerk cluster describe --bootstrap-server {}{command_config}",
        bootstrap[0]
    );
    println!("Ctrl-C stops the whole cluster.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("stopping...");
    for (_, _, child) in &children {
        terminate(child);
    }
    let deadline = Instant::now() + STOP_WAIT;
    for (n, _, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                _ => {
                    eprintln!("node {n} did not stop in time; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
    }
    println!("stopped");
    Ok(())
}

/// Writes a file only its owner may read: node configs and the client
/// settings may hold passwords.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn node_files_match_the_documented_layout() {
        let p = node_properties(2, 3, 9092, 9192, 9080, std::path::Path::new("/d"));
        assert!(p.contains("node.id=2\n"));
        assert!(p.contains("listeners=PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:9193\n"));
        assert!(p.contains(
            "controller.quorum.voters=1@127.0.0.1:9192,2@127.0.0.1:9193,3@127.0.0.1:9194\n"
        ));
        assert!(p.contains("log.dirs=/d/node-2\n"));
        assert!(p.contains("kraftwerk.http.listener=127.0.0.1:9081\n"));
    }

    #[test]
    fn secure_nodes_speak_sasl_ssl_and_mutual_tls() {
        let certs = std::path::Path::new("/d/certs");
        let p = secure_properties(2, certs, "pw");
        assert!(p.contains(
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL,REPLICATION:SSL\n"
        ));
        assert!(p.contains("ssl.keystore.location=/d/certs/node-2.pem\n"));
        assert!(p.contains("user_admin=\"pw\";\n"));
        assert!(p.contains("super.users=User:admin\n"));
        let dir = std::env::temp_dir().join(format!("kraftwerk-dev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let client = dir.join("client.properties");
        let first = admin_password(&client);
        assert_eq!(first.len(), 24);
        std::fs::write(&client, client_properties(certs, &first)).unwrap();
        // A second run keeps the password the first one wrote.
        assert_eq!(admin_password(&client), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
