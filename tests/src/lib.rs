//! The test harness: real `kraftwerk server` processes on free ports, each
//! with its own data directory, stopped and removed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const PORT_ATTEMPTS: usize = 5;

/// The `kraftwerk` binary: `$KRAFTWERK_BIN`, else `target/debug/kraftwerk`.
pub fn kraftwerk_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KRAFTWERK_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("debug").join("kraftwerk")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}

/// One broker process.
pub struct BrokerProcess {
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
}

impl BrokerProcess {
    pub fn start() -> BrokerProcess {
        Self::start_with(&[])
    }

    /// Starts a broker with extra `server` arguments (e.g. `--override k=v`).
    pub fn start_with(extra: &[&str]) -> BrokerProcess {
        let data_dir = tempfile::Builder::new()
            .prefix("kraftwerk-it-")
            .tempdir()
            .expect("tempdir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut b = BrokerProcess {
            addr,
            data_dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        // Another test may grab the same free port between our probe and the
        // broker's bind; then the broker exits and we try a new port.
        for _ in 0..PORT_ATTEMPTS {
            if b.try_start() {
                return b;
            }
            b.addr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        }
        panic!("broker could not bind a free port in {PORT_ATTEMPTS} attempts");
    }

    /// Starts the process again on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "broker exited before listening on {}",
            self.addr
        );
    }

    /// Starts the process; false when it exited before listening.
    fn try_start(&mut self) -> bool {
        let bin = kraftwerk_bin();
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --bin kraftwerk` first",
            bin.display()
        );
        let child = Command::new(bin)
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--listeners")
            .arg(format!("PLAINTEXT://{}", self.addr))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kraftwerk");
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "broker did not listen on {} in time",
                self.addr
            );
            if self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some()
            {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Listening, and it is our process that listens.
        self.is_running()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
