//! The test harness: real `kraftwerk server` processes on free ports, each
//! with its own data directory, stopped and removed when dropped.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// It binds port 0 and the harness learns the port from the line the
    /// server prints, so parallel tests never race for a port.
    pub fn start_with(extra: &[&str]) -> BrokerProcess {
        let data_dir = tempfile::Builder::new()
            .prefix("kraftwerk-it-")
            .tempdir()
            .expect("tempdir");
        let mut b = BrokerProcess {
            addr: "127.0.0.1:0".parse().expect("addr"),
            data_dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        b.restart();
        b
    }

    /// Starts the process again on the same port and data directory.
    pub fn restart(&mut self) {
        let bin = kraftwerk_bin();
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --bin kraftwerk` first",
            bin.display()
        );
        let mut child = Command::new(bin)
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--listeners")
            .arg(format!("PLAINTEXT://{}", self.addr))
            .args(&self.extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kraftwerk");
        let stdout = child.stdout.take().expect("stdout");
        self.child = Some(child);
        // The server prints "kraftwerk listening on ADDR" once it is bound.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The server's log shares stdout: pass it on, so that a failing
                // test shows it.
                eprintln!("{line}");
                if let Some(addr) = line.strip_prefix("kraftwerk listening on ") {
                    let addr = addr
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx.recv_timeout(STARTUP_TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "broker did not start listening (data dir {})",
                self.data_dir.path().display()
            )
        });
        self.addr = addr.parse().expect("printed address");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "broker did not accept on {} in time",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// Who wrote a batch, for idempotent-producer tests.
#[derive(Debug, Clone, Copy)]
pub struct ProducerStamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// One uncompressed v2 record batch (one, as Kafka requires of a produce
/// request's partition) holding `values`, stamped with a
/// producer id and sequences when `producer` is given.
pub fn record_batch(values: &[String], producer: Option<ProducerStamp>) -> bytes::Bytes {
    encode_batch(values, producer, false)
}

/// [`record_batch`] as a transactional producer writes it.
pub fn transactional_batch(values: &[String], producer: ProducerStamp) -> bytes::Bytes {
    encode_batch(values, Some(producer), true)
}

fn encode_batch(
    values: &[String],
    producer: Option<ProducerStamp>,
    transactional: bool,
) -> bytes::Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.map(|p| p.producer_id).unwrap_or(-1),
            producer_epoch: producer.map(|p| p.producer_epoch).unwrap_or(-1),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Without a producer the batch's base sequence is -1; the
            // encoder keeps records in one batch while offset - sequence
            // stays the same, so the sequences run on from -1.
            sequence: producer
                .map(|p| p.base_sequence + i as i32)
                .unwrap_or(i as i32 - 1),
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(bytes::Bytes::from(v.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

pub mod cases;
pub mod wire;
