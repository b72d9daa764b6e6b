//! `kraftwerk server`: run one node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;

use kraftwerk_broker::Broker;
use kraftwerk_controller::commands::CommandResult;
use kraftwerk_controller::node::ControllerConfig;
use kraftwerk_controller::service::LivenessConfig;
use kraftwerk_controller::single_node::LegacyMetadata;
use kraftwerk_controller::ControllerProcess;
use kraftwerk_types::BrokerConfig;
use tokio_util::sync::CancellationToken;

/// Run one node.
///
/// Configuration comes from four layers, each overriding the one before:
/// the `--config` file, then `KRAFTWERK_*` environment variables, then
/// `--data-dir` and `--listeners`, then `--override`.
///
/// Environment variables: `KRAFTWERK_<NAME>` sets the Kafka key made from
/// `<NAME>` by lowercasing it and turning `___` into `-`, `__` into `_` and
/// `_` into `.` (the rule of Kafka's container images), e.g.
/// `KRAFTWERK_NODE_ID=2` sets `node.id`, `KRAFTWERK_LOG_DIRS` sets `log.dirs`,
/// `KRAFTWERK_CONTROLLER_QUORUM_VOTERS` sets `controller.quorum.voters`.
/// `KRAFTWERK_BOOTSTRAP_SERVER`, `KRAFTWERK_BIN`, `KRAFTWERK_KEEP_DIRS`,
/// `KRAFTWERK_RELIABILITY_OUT` and `KRAFTWERK_STORAGE_CRASH_DIR` belong to
/// the client commands and the tests and are not read as configuration.
#[derive(Debug, Args)]
#[command(after_help = ENV_HELP)]
pub struct ServerArgs {
    /// Kafka-style properties file (`key=value` lines, e.g. server.properties).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where partition logs live (sets `log.dirs`). Default: ./data
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listeners, as in Kafka's `listeners` (default PLAINTEXT://127.0.0.1:9092).
    #[arg(long, value_name = "NAME://HOST:PORT,...")]
    pub listeners: Option<String>,
    /// Any property, overriding the file and the environment: `--override num.partitions=3`. Repeatable.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Read and check the configuration (keys, listeners, certificates and
    /// keys, SASL, the authorizer, the quorum voters), print a summary and
    /// exit without starting: 0 when the node would start.
    #[arg(long)]
    pub check: bool,
}

/// The configuration rules, as `kraftwerk server --help` prints them.
const ENV_HELP: &str = "\
Configuration, each layer overriding the one before: the --config file, \
KRAFTWERK_* environment variables, --data-dir and --listeners, --override.

KRAFTWERK_<NAME> sets the key made from <NAME> by lowercasing it and turning \
`___` into `-`, `__` into `_` and `_` into `.` (as Kafka's container images do): \
KRAFTWERK_NODE_ID=2 sets node.id, KRAFTWERK_CONTROLLER_QUORUM_VOTERS sets \
controller.quorum.voters. KRAFTWERK_BOOTSTRAP_SERVER, KRAFTWERK_BIN, \
KRAFTWERK_KEEP_DIRS, KRAFTWERK_RELIABILITY_OUT and KRAFTWERK_STORAGE_CRASH_DIR \
are not configuration.";

/// Prefix of the environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "KRAFTWERK_";

/// `KRAFTWERK_*` variables that are not configuration: the client commands'
/// and the test suites' own.
pub const ENV_NOT_CONFIG: [&str; 5] = [
    "KRAFTWERK_BOOTSTRAP_SERVER",
    "KRAFTWERK_BIN",
    "KRAFTWERK_KEEP_DIRS",
    "KRAFTWERK_RELIABILITY_OUT",
    "KRAFTWERK_STORAGE_CRASH_DIR",
];

/// The Kafka key a `KRAFTWERK_<NAME>` variable sets, from `<NAME>`:
/// lowercase, then `___` → `-`, `__` → `_`, `_` → `.`, longest run first
/// (as `sed 's/___/-/g; s/__/_/g; s/_/./g'` does). None for an empty name.
pub fn env_name_to_key(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let mut key = String::with_capacity(name.len());
    let mut underscores = 0usize;
    let flush = |key: &mut String, run: &mut usize| {
        while *run >= 3 {
            key.push('-');
            *run -= 3;
        }
        match *run {
            2 => key.push('_'),
            1 => key.push('.'),
            _ => {}
        }
        *run = 0;
    };
    for c in name.chars() {
        if c == '_' {
            underscores += 1;
        } else {
            flush(&mut key, &mut underscores);
            key.extend(c.to_lowercase());
        }
    }
    flush(&mut key, &mut underscores);
    Some(key)
}

/// The configuration the environment sets: every `KRAFTWERK_<NAME>=value`
/// except [`ENV_NOT_CONFIG`], keyed by [`env_name_to_key`]. Values are kept
/// as written.
pub fn env_config(vars: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(name, _)| !ENV_NOT_CONFIG.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            let key = env_name_to_key(name.strip_prefix(ENV_PREFIX)?)?;
            Some((key, value))
        })
        .collect()
}

/// Whether a configuration describes a member of a cluster rather than a
/// single node (whose controller is a quorum of one voter in the process).
fn is_cluster(raw: &BTreeMap<String, String>) -> bool {
    let voters = raw
        .get("controller.quorum.voters")
        .is_some_and(|v| !v.trim().is_empty());
    let dedicated = raw.get("process.roles").is_some_and(|roles| {
        let roles: Vec<&str> = roles.split(',').map(str::trim).collect();
        !(roles.contains(&"broker") && roles.contains(&"controller"))
    });
    voters || dedicated
}

/// Merges the configuration layers: file < environment < `--data-dir` and
/// `--listeners` < `--override`. Without a file, a single node gets
/// `offsets.topic.replication.factor=1` (one broker cannot hold three
/// replicas of `__consumer_offsets`, as in Kafka's single-node quickstart)
/// unless a layer sets it or the configuration is a cluster's.
pub fn layered_config(
    file: Option<BTreeMap<String, String>>,
    env: BTreeMap<String, String>,
    data_dir: Option<&Path>,
    listeners: Option<&str>,
    overrides: &[String],
) -> anyhow::Result<BTreeMap<String, String>> {
    let from_file = file.is_some();
    let mut raw = file.unwrap_or_default();
    raw.extend(env);
    if let Some(dir) = data_dir {
        raw.insert("log.dirs".into(), dir.display().to_string());
    }
    if let Some(l) = listeners {
        raw.insert("listeners".into(), l.to_string());
    }
    for o in overrides {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("--override '{o}' is not KEY=VALUE"))?;
        raw.insert(k.trim().to_string(), v.trim().to_string());
    }
    if !from_file && !is_cluster(&raw) {
        raw.entry("offsets.topic.replication.factor".to_string())
            .or_insert_with(|| "1".to_string());
    }
    Ok(raw)
}

/// Raises the soft limit on open files (RLIMIT_NOFILE) to the hard limit,
/// as servers commonly do: the common soft default of 1,024 is far below
/// what a broker with thousands of partitions and connections needs (about
/// one descriptor per partition, one per connection). A failure is logged
/// and the broker runs with the limit it has.
fn raise_open_files_limit() {
    let before = rlimit::Resource::NOFILE.get().ok();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => {
            let (before_soft, hard) = before.unwrap_or((soft, soft));
            if before_soft != soft {
                tracing::info!(
                    before = before_soft,
                    now = soft,
                    hard,
                    "raised the open files limit"
                );
            } else {
                tracing::info!(limit = soft, hard, "open files limit");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open files limit");
        }
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    raise_open_files_limit();
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(
                BrokerConfig::parse_properties(&text)
                    .with_context(|| format!("parsing {}", path.display()))?,
            )
        }
        None => None,
    };
    let env = env_config(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    );
    if !env.is_empty() {
        let keys: Vec<&str> = env.keys().map(String::as_str).collect();
        tracing::info!(keys = %keys.join(","), "configuration from KRAFTWERK_* environment variables");
    }
    let raw = layered_config(
        file,
        env,
        args.data_dir.as_deref(),
        args.listeners.as_deref(),
        &args.overrides,
    )?;
    let roles = raw
        .get("process.roles")
        .cloned()
        .unwrap_or_else(|| "broker,controller".into());
    let is_broker = roles.split(',').any(|r| r.trim() == "broker");
    let is_controller = roles.split(',').any(|r| r.trim() == "controller");
    if !is_broker && !is_controller {
        anyhow::bail!("process.roles='{roles}' names neither broker nor controller");
    }
    let voters = raw.get("controller.quorum.voters").cloned();
    if voters.is_none() && !is_broker {
        anyhow::bail!("process.roles=controller needs controller.quorum.voters");
    }
    let config = BrokerConfig::from_map(raw).context("invalid configuration")?;
    if args.check {
        return check(&config, voters.as_deref(), is_broker, is_controller);
    }
    let shutdown = CancellationToken::new();
    let mut config = config;
    let controller = match (&voters, is_controller) {
        (Some(v), true) => {
            let bind = controller_bind_address(&config, v)?;
            let listener = bind_controller_listener(&bind).await?;
            Some(start_controller(&config, v, listener, None, shutdown.clone()).await?)
        }
        // A single node: a controller quorum of one voter in this process.
        (None, true) => Some(start_single_node_quorum(&mut config, shutdown.clone()).await?),
        (None, false) => None,
        (Some(_), false) => None,
    };
    if let (Some(c), false) = (&controller, is_broker) {
        crate::controller_http::start(c.node().clone(), &config, shutdown.clone()).await;
    }
    let broker = if is_broker {
        let api = http_api(&config);
        let b = Broker::start_with_http(config, shutdown.clone(), api).await?;
        // Clients are answered once the broker is registered and unfenced.
        let started = std::time::Instant::now();
        let stopped = {
            let unfenced = b.unfenced();
            tokio::pin!(unfenced);
            loop {
                tokio::select! {
                    _ = &mut unfenced => break false,
                    _ = wait_for_signal() => break true,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
                        tracing::warn!(
                            waited_s = started.elapsed().as_secs(),
                            "waiting to be registered and unfenced by the controller quorum"
                        );
                    }
                }
            }
        };
        if stopped {
            shutdown.cancel();
            b.wait().await;
            if let Some(controller) = controller {
                controller.wait().await;
            }
            return Ok(());
        }
        println!("kraftwerk listening on {} (Ctrl-C to stop)", b.local_addr);
        Some(b)
    } else {
        None
    };
    wait_for_signal().await;
    tracing::info!("shutting down");
    if let Some(b) = &broker {
        b.controlled_shutdown().await;
    }
    shutdown.cancel();
    if let Some(b) = broker {
        b.wait().await;
    }
    if let Some(controller) = controller {
        controller.wait().await;
    }
    Ok(())
}

/// The web console and HTTP API routes (kraftwerk-console), answering
/// through one of this node's Kafka listeners; None when they are turned off
/// (`kraftwerk.http.api.enable=false`) or no listener serves them.
///
/// With an authorizer, the first SASL listener offering PLAIN or SCRAM is
/// used, so that callers sign in (HTTP Basic) and act as their own
/// principal under the ACLs; otherwise the first PLAINTEXT listener (whose
/// callers act as `User:ANONYMOUS`, as any client of that port does), else
/// the first such SASL listener. A SASL_SSL listener is used only when the
/// node has a truststore for it to check its own certificate with.
fn http_api(config: &BrokerConfig) -> Option<axum::Router> {
    use kraftwerk_types::config::SecurityProtocol;
    if config
        .value_of("kraftwerk.http.api.enable")
        .is_some_and(|v| v.trim() == "false")
    {
        return None;
    }
    let read_only = config
        .value_of("kraftwerk.http.api.read.only")
        .is_some_and(|v| v.trim() == "true");
    let listeners = kraftwerk_broker::listeners::kafka_listeners(config);
    let plaintext = listeners
        .iter()
        .find(|l| config.security_protocol(&l.name) == SecurityProtocol::Plaintext);
    let sasl = listeners.iter().find_map(|l| {
        let security = sasl_client_security(config, &l.name)?;
        Some((l, security))
    });
    let authorizer = config
        .value_of("authorizer.class.name")
        .is_some_and(|v| !v.trim().is_empty());
    let (listener, security) = match (authorizer, plaintext, sasl) {
        (true, _, Some((l, s))) => (l, Some(s)),
        (_, Some(l), _) => (l, None),
        (_, None, Some((l, s))) => (l, Some(s)),
        (_, None, None) => {
            tracing::info!(
                "no PLAINTEXT listener, nor a SASL one with PLAIN or SCRAM: the console and HTTP API (/api/v1) are not served"
            );
            return None;
        }
    };
    let host = match listener.host.as_str() {
        "" | "0.0.0.0" => "127.0.0.1".to_string(),
        "::" | "[::]" => "[::1]".to_string(),
        h => h.to_string(),
    };
    // A port chosen at bind time (0) is not known here.
    if listener.port == 0 {
        return None;
    }
    let port = listener.port;
    let client = kraftwerk_client::ClientConfig {
        bootstrap_servers: vec![format!("{host}:{port}")],
        client_id: "kraftwerk-http-api".to_string(),
        request_timeout_ms: 15_000,
        security,
        ..kraftwerk_client::ClientConfig::default()
    };
    Some(kraftwerk_console::router(
        kraftwerk_console::ConsoleConfig { client, read_only },
    ))
}

/// Client settings for reaching this node's SASL listener `name` with a
/// mechanism the client speaks (the user is filled in per caller); None
/// when the listener is not SASL, offers neither PLAIN nor SCRAM, or uses
/// TLS without a truststore here.
fn sasl_client_security(
    config: &BrokerConfig,
    name: &str,
) -> Option<kraftwerk_client::security::ClientSecurity> {
    let protocol = config.security_protocol(name);
    if !protocol.uses_sasl() {
        return None;
    }
    let mechanisms = config
        .listener_value(name, "sasl.enabled.mechanisms")
        .unwrap_or_default();
    let mechanism = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
        .into_iter()
        .find(|m| mechanisms.split(',').any(|e| e.trim() == *m))?;
    let mut props = std::collections::BTreeMap::new();
    props.insert("security.protocol".to_string(), protocol.name().to_string());
    props.insert("sasl.mechanism".to_string(), mechanism.to_string());
    props.insert(
        "sasl.jaas.config".to_string(),
        "username=\"-\" password=\"-\"".to_string(),
    );
    if protocol.uses_tls() {
        let truststore = config.listener_value(name, "ssl.truststore.location")?;
        props.insert("ssl.truststore.location".to_string(), truststore);
        // The node reaches itself over loopback, not by the certificate's name.
        props.insert(
            "ssl.endpoint.identification.algorithm".to_string(),
            String::new(),
        );
    }
    match kraftwerk_client::security::ClientSecurity::from_properties(&props) {
        Ok(security) => security,
        Err(e) => {
            tracing::info!(listener = name, error = %e, "the HTTP API cannot use this listener");
            None
        }
    }
}

/// `kraftwerk server --check`: what `run` reads before it binds, without
/// starting anything.
fn check(
    config: &BrokerConfig,
    voters: Option<&str>,
    is_broker: bool,
    is_controller: bool,
) -> anyhow::Result<()> {
    if let Some(v) = voters {
        kraftwerk_broker::remote::parse_voters(v)
            .map_err(|e| anyhow::anyhow!("controller.quorum.voters: {e}"))?;
    }
    if is_controller {
        let name = kraftwerk_broker::security::controller_listener_name(config);
        kraftwerk_broker::security::node_tls(config, &name).context("controller listener TLS")?;
    }
    if is_broker {
        kraftwerk_broker::check_config(config)?;
    }
    let listeners: Vec<String> = config
        .listeners
        .iter()
        .map(|l| {
            format!(
                "{}://{}:{} ({})",
                l.name,
                l.host,
                l.port,
                config.security_protocol(&l.name).name()
            )
        })
        .collect();
    println!(
        "configuration OK: node {} ({}), listeners {}",
        config.node_id,
        [(is_broker, "broker"), (is_controller, "controller")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, r)| *r)
            .collect::<Vec<_>>()
            .join(","),
        listeners.join(", ")
    );
    Ok(())
}

/// Where this node's controller listens: the controller listener
/// (`controller.listener.names`, default `CONTROLLER`) of `listeners`, or,
/// without one, this node's address in `controller.quorum.voters`.
fn controller_bind_address(config: &BrokerConfig, voters: &str) -> anyhow::Result<String> {
    let voters = kraftwerk_broker::remote::parse_voters(voters)
        .map_err(|e| anyhow::anyhow!("controller.quorum.voters: {e}"))?;
    let node_id = u64::try_from(config.node_id).context("node.id must not be negative")?;
    let names = controller_listener_names(config);
    match controller_listener(config) {
        Some(l) => Ok(l.bind_addr()),
        None => voters.get(&node_id).cloned().with_context(|| {
            format!("node {node_id} is not in controller.quorum.voters and has no {names} listener")
        }),
    }
}

fn controller_listener_names(config: &BrokerConfig) -> String {
    config
        .raw
        .get("controller.listener.names")
        .cloned()
        .unwrap_or_else(|| "CONTROLLER".into())
}

fn controller_listener(config: &BrokerConfig) -> Option<&kraftwerk_types::config::Listener> {
    let names = controller_listener_names(config);
    config
        .listeners
        .iter()
        .find(|l| names.split(',').any(|n| n.trim() == l.name))
}

async fn bind_controller_listener(bind: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = tokio::net::lookup_host(bind)
        .await
        .with_context(|| format!("resolving controller listener {bind}"))?
        .next()
        .with_context(|| format!("controller listener {bind} resolves to nothing"))?;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding controller listener {addr}"))
}

/// A single node's controller: a Raft quorum of this node alone, as Kafka's
/// combined mode runs one, so a single node takes the same metadata path
/// as a cluster. It listens on the controller listener when `listeners`
/// names one (Kafka's `CONTROLLER://:9093`), else on an ephemeral loopback
/// port that only this process uses; follower fetches get an ephemeral
/// loopback port too unless a `REPLICATION` listener is given. Sets
/// `controller.quorum.voters` in `config` for the broker. Metadata a single
/// node kept in `metadata.json` before this is imported once.
async fn start_single_node_quorum(
    config: &mut BrokerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<ControllerProcess> {
    let bind = controller_listener(config)
        .map(|l| l.bind_addr())
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let listener = bind_controller_listener(&bind).await?;
    let bound = listener
        .local_addr()
        .context("controller listener address")?;
    let host = if bound.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        bound.ip().to_string()
    };
    let voters = format!("{}@{host}:{}", config.node_id, bound.port());
    config
        .raw
        .insert("controller.quorum.voters".into(), voters.clone());
    if !config
        .listeners
        .iter()
        .any(|l| l.name == kraftwerk_broker::replication::LISTENER_NAME)
    {
        config.listeners.push(kraftwerk_types::config::Listener {
            name: kraftwerk_broker::replication::LISTENER_NAME.to_string(),
            host: "127.0.0.1".to_string(),
            port: 0,
        });
    }
    let metadata_dir = config.log_dirs[0].join("__cluster_metadata");
    let legacy = LegacyMetadata::find(&metadata_dir).map_err(anyhow::Error::msg)?;
    let cluster_id = config
        .cluster_id
        .clone()
        .or_else(|| legacy.as_ref().map(|l| l.cluster_id.clone()));
    let controller = start_controller(config, &voters, listener, cluster_id, shutdown).await?;
    if let Some(legacy) = legacy {
        import_single_node(&controller, &legacy).await?;
    }
    Ok(controller)
}

/// Proposes a single node's `metadata.json` to its new quorum, then renames
/// the file. An import the log refuses (it already holds topics: the file
/// was imported before a crash kept it from being renamed) only renames it.
async fn import_single_node(
    controller: &ControllerProcess,
    legacy: &LegacyMetadata,
) -> anyhow::Result<()> {
    let node = controller.node();
    node.wait_for_leader(std::time::Duration::from_secs(60))
        .await
        .context("the single node's controller quorum elected no leader")?;
    match node
        .write(legacy.command.clone())
        .await
        .with_context(|| format!("importing {}", legacy.path.display()))?
    {
        CommandResult::Error { message, .. } => {
            tracing::info!(path = %legacy.path.display(), %message, "single-node metadata already imported")
        }
        _ => tracing::info!(
            path = %legacy.path.display(),
            "imported a single node's metadata into its controller quorum"
        ),
    }
    legacy
        .retire()
        .with_context(|| format!("renaming {} after importing it", legacy.path.display()))
}

/// Starts this node's controller, the Raft node and its gRPC server, on
/// `listener`. `cluster_id` is the id a new quorum takes (else
/// `cluster.id`, else a random one).
async fn start_controller(
    config: &BrokerConfig,
    voters: &str,
    listener: tokio::net::TcpListener,
    cluster_id: Option<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<ControllerProcess> {
    let voters = kraftwerk_broker::remote::parse_voters(voters)
        .map_err(|e| anyhow::anyhow!("controller.quorum.voters: {e}"))?;
    let node_id = u64::try_from(config.node_id).context("node.id must not be negative")?;
    let addr = listener
        .local_addr()
        .context("controller listener address")?;
    let mut cc = ControllerConfig::new(
        node_id,
        voters,
        config.log_dirs[0].join("__cluster_metadata"),
    );
    cc.cluster_id = cluster_id.or_else(|| config.cluster_id.clone());
    let controller_name = kraftwerk_broker::security::controller_listener_name(config);
    let tls = kraftwerk_broker::security::node_tls(config, &controller_name)
        .context("controller listener TLS")?;
    cc.tls = tls
        .clone()
        .map(|c| c as std::sync::Arc<dyn kraftwerk_rpc::NodeTls>);
    let liveness = LivenessConfig {
        broker_session_timeout_ms: config
            .raw
            .get("broker.session.timeout.ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(9000),
        auto_leader_rebalance_enable: config
            .raw
            .get("auto.leader.rebalance.enable")
            .map(|v| v != "false")
            .unwrap_or(true),
        leader_imbalance_check_interval_ms: config
            .raw
            .get("leader.imbalance.check.interval.seconds")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|s| s * 1000)
            .unwrap_or(300_000),
    };
    if let Some(cell) = tls {
        tokio::spawn(kraftwerk_broker::security::reload_certificates(
            vec![cell],
            config
                .value_of("kraftwerk.ssl.reload.interval.ms")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(5000),
            shutdown.clone(),
        ));
    }
    let controller = ControllerProcess::start(cc, liveness, listener, shutdown)
        .await
        .context("starting the controller")?;
    tracing::info!(node_id, %addr, "controller started");
    println!("kraftwerk controller {node_id} listening on {addr}");
    Ok(controller)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        vars(pairs).into_iter().collect()
    }

    #[test]
    fn env_names_become_kafka_keys() {
        let cases = [
            ("NODE_ID", "node.id"),
            ("LOG_DIRS", "log.dirs"),
            ("CONTROLLER_QUORUM_VOTERS", "controller.quorum.voters"),
            ("ADVERTISED_LISTENERS", "advertised.listeners"),
            (
                "LISTENER_SECURITY_PROTOCOL_MAP",
                "listener.security.protocol.map",
            ),
            ("BROKER_SESSION_TIMEOUT_MS", "broker.session.timeout.ms"),
            ("LOG_CLEANER_IO_BUFFER__SIZE", "log.cleaner.io.buffer_size"),
            ("SOME___DASHED_KEY", "some-dashed.key"),
            ("A____B", "a-.b"),
            ("A_____B", "a-_b"),
            ("A______B", "a--b"),
            ("TRAILING_", "trailing."),
            ("_LEADING", ".leading"),
            ("X", "x"),
        ];
        for (name, key) in cases {
            assert_eq!(env_name_to_key(name).as_deref(), Some(key), "{name}");
        }
        assert_eq!(env_name_to_key(""), None);
    }

    #[test]
    fn env_config_takes_only_prefixed_config_variables() {
        let env = env_config(vars(&[
            ("KRAFTWERK_NODE_ID", "3"),
            ("KRAFTWERK_LISTENERS", "PLAINTEXT://0.0.0.0:9092"),
            ("KRAFTWERK_", "ignored"),
            ("KRAFTWERK_BOOTSTRAP_SERVER", "localhost:9092"),
            ("KRAFTWERK_BIN", "/bin/kraftwerk"),
            ("KRAFTWERK_KEEP_DIRS", "1"),
            ("KRAFTWERK_RELIABILITY_OUT", "/tmp/x.json"),
            ("KRAFTWERK_STORAGE_CRASH_DIR", "/tmp/c"),
            ("KAFKA_NODE_ID", "9"),
            ("PATH", "/usr/bin"),
            ("kraftwerk_node_id", "7"),
        ]));
        assert_eq!(
            env,
            map(&[("node.id", "3"), ("listeners", "PLAINTEXT://0.0.0.0:9092")])
        );
    }

    #[test]
    fn layers_override_in_order() {
        let file = map(&[
            ("node.id", "1"),
            ("log.dirs", "/file"),
            ("listeners", "PLAINTEXT://file:1"),
            ("num.partitions", "1"),
            ("controller.quorum.voters", "1@a:9093"),
        ]);
        let env = map(&[
            ("node.id", "2"),
            ("log.dirs", "/env"),
            ("listeners", "PLAINTEXT://env:2"),
            ("num.partitions", "2"),
        ]);
        let raw = layered_config(
            Some(file),
            env,
            Some(Path::new("/flag")),
            Some("PLAINTEXT://flag:3"),
            &[
                "num.partitions=4".to_string(),
                "log.dirs = /override".to_string(),
            ],
        )
        .unwrap();
        assert_eq!(raw["node.id"], "2");
        assert_eq!(raw["listeners"], "PLAINTEXT://flag:3");
        assert_eq!(raw["log.dirs"], "/override");
        assert_eq!(raw["num.partitions"], "4");
        assert_eq!(raw["controller.quorum.voters"], "1@a:9093");
        // A file never gets the single-node default.
        assert!(!raw.contains_key("offsets.topic.replication.factor"));
    }

    #[test]
    fn single_node_default_applies_only_without_file_and_outside_a_cluster() {
        let rf = "offsets.topic.replication.factor";
        // No arguments at all: unchanged single-node behaviour.
        let raw = layered_config(None, BTreeMap::new(), None, None, &[]).unwrap();
        assert_eq!(raw, map(&[(rf, "1")]));
        // The environment configures a single node: default kept.
        let raw = layered_config(None, map(&[("log.dirs", "/data")]), None, None, &[]).unwrap();
        assert_eq!(raw[rf], "1");
        // The environment or an override sets it: theirs wins.
        let raw = layered_config(None, map(&[(rf, "2")]), None, None, &[]).unwrap();
        assert_eq!(raw[rf], "2");
        let raw = layered_config(None, BTreeMap::new(), None, None, &[format!("{rf}=3")]).unwrap();
        assert_eq!(raw[rf], "3");
        // A cluster member configured by the environment: Kafka's default (3) stays.
        let voters = map(&[("controller.quorum.voters", "1@kafka-1:9093")]);
        let raw = layered_config(None, voters, None, None, &[]).unwrap();
        assert!(!raw.contains_key(rf));
        let broker_only = map(&[("process.roles", "broker")]);
        let raw = layered_config(None, broker_only, None, None, &[]).unwrap();
        assert!(!raw.contains_key(rf));
        let combined = map(&[("process.roles", "broker, controller")]);
        let raw = layered_config(None, combined, None, None, &[]).unwrap();
        assert_eq!(raw[rf], "1");
    }

    #[test]
    fn malformed_override_is_an_error() {
        let err = layered_config(None, BTreeMap::new(), None, None, &["nokey".to_string()]);
        assert!(err.is_err());
    }
}
