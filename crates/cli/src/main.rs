//! Layer 4: the `kraftwerk` binary. Thin: parses flags, calls the broker or
//! the client library, prints for people (default) or as JSON (`--output json`).

mod acls;
mod admin;
mod bench;
mod certs;
mod cluster;
mod console;
mod controller_http;
mod dev;
mod groups;
mod server;
mod transactions;
mod users;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "kraftwerk",
    version,
    about = "Kraftwerk: a Kafka-compatible event-streaming platform"
)]
struct Cli {
    /// Format of the server's log (written to stdout; RUST_LOG filters it).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Aligned text for people.
    #[default]
    Human,
    /// One JSON document (or one per record) for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node. With no arguments: a single node, data under ./data, Kafka listener 127.0.0.1:9092.
    Server(server::ServerArgs),
    /// Create, list, describe, alter and delete topics.
    Topics(admin::TopicsArgs),
    /// Send lines from stdin or a file as records.
    Produce(console::ProduceArgs),
    /// Print records of a topic.
    Consume(console::ConsumeArgs),
    /// Start a local cluster of N broker+controller nodes as separate processes.
    Dev(dev::DevArgs),
    /// Make a private CA and node or client certificates (PEM keystores).
    Certs(certs::CertsArgs),
    /// List, describe, reset offsets of and delete consumer groups (like kafka-consumer-groups.sh).
    Groups(groups::GroupsArgs),
    /// List, describe and abort transactions; find hanging ones (like kafka-transactions.sh).
    Transactions(transactions::TransactionsArgs),
    /// Set, list and delete users' SCRAM credentials (like kafka-configs.sh --entity-type users).
    Users(users::UsersArgs),
    /// Add, list and remove ACLs (like kafka-acls.sh).
    Acls(acls::AclsArgs),
    /// Describe the cluster's brokers or its metadata quorum.
    Cluster(cluster::ClusterArgs),
    /// Measure produce or consume throughput and latency (like kafka-producer-perf-test).
    Bench(bench::BenchArgs),
}

/// The server's log: stdout, as a container runtime expects (the CLI's
/// client commands keep stdout for their output and log nothing).
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Writes one line to standard output. An error (the reader went away:
/// `kraftwerk consume ... | head`) is returned instead of panicking as
/// `println!` does, for commands that must end cleanly.
pub fn print_line(line: impl std::fmt::Display) -> std::io::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{line}")
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Commands that print listings stop quietly when their reader goes away
    // (`kraftwerk topics list | head`), as Unix tools do, instead of
    // panicking on the closed pipe. Not the server, nor commands that hold
    // a consumer or producer, which must end cleanly.
    if matches!(
        cli.command,
        Command::Topics(_)
            | Command::Groups(_)
            | Command::Transactions(_)
            | Command::Users(_)
            | Command::Acls(_)
            | Command::Cluster(_)
    ) {
        sigpipe::reset();
    }
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => {
                init_tracing(cli.log_format);
                server::run(args).await
            }
            Command::Topics(args) => admin::run(args).await,
            Command::Produce(args) => console::produce(args).await,
            Command::Consume(args) => console::consume(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Certs(args) => certs::run(args),
            Command::Cluster(args) => cluster::run(args).await,
            Command::Groups(args) => groups::run(args).await,
            Command::Transactions(args) => transactions::run(args).await,
            Command::Users(args) => users::run(args).await,
            Command::Acls(args) => acls::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--bootstrap-server`, shared by every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// Broker(s) to start from, `host:port[,host:port...]`.
    #[arg(
        long,
        default_value = "localhost:9092",
        env = "KRAFTWERK_BOOTSTRAP_SERVER"
    )]
    pub bootstrap_server: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// Client properties as Kafka's tools take them: `security.protocol`,
    /// `ssl.truststore.location` (PEM), `ssl.keystore.location` (PEM, for
    /// mutual TLS), `sasl.mechanism`, `sasl.jaas.config`.
    #[arg(long, value_name = "FILE", env = "KRAFTWERK_COMMAND_CONFIG")]
    pub command_config: Option<std::path::PathBuf>,
}

impl Connect {
    pub fn client_config(&self, client_id: &str) -> anyhow::Result<kraftwerk_client::ClientConfig> {
        let mut c = kraftwerk_client::ClientConfig::new(
            self.bootstrap_server
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty()),
        );
        c.client_id = client_id.to_string();
        if let Some(path) = &self.command_config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--command-config {}: {e}", path.display()))?;
            let props: std::collections::BTreeMap<String, String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            c.security = kraftwerk_client::security::ClientSecurity::from_properties(&props)
                .map_err(|e| anyhow::anyhow!("--command-config {}: {e}", path.display()))?;
        }
        Ok(c)
    }
}

/// Parses `key=value`.
pub fn key_value(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("'{s}' is not key=value"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}
