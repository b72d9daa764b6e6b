//! `kraftwerk dev --brokers N`: a local cluster of N combined
//! (broker + controller) nodes as separate processes, the quickest way to try
//! a real cluster. Node n listens on 127.0.0.1:(9091+n) for Kafka clients and
//! 127.0.0.1:(9191+n) for the controller quorum.

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
    let mut children = Vec::new();
    for n in 1..=args.brokers {
        let config = data_dir.join(format!("node-{n}.properties"));
        std::fs::write(
            &config,
            node_properties(
                n,
                args.brokers,
                args.base_port,
                args.controller_base_port,
                args.http_base_port,
                &data_dir,
            ),
        )?;
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
        "Inspect:          kraftwerk cluster describe --bootstrap-server {}",
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

#[cfg(test)]
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
}
