//! Broker sessions against a real controller process over gRPC: a broker
//! whose session ends while nothing listens on its replication endpoint any
//! more is fenced at once; one whose endpoint still accepts connections is
//! left to its session timeout.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use kraftwerk_controller::service::LivenessConfig;
use kraftwerk_controller::ControllerProcess;
use kraftwerk_rpc::controller as pb;
use kraftwerk_rpc::controller::controller_client::ControllerClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(20);

struct Running {
    process: ControllerProcess,
    client: ControllerClient<Channel>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

/// A single-voter quorum with Kafka's session timeout (9 s), so nothing
/// in these tests is fenced by the timeout.
async fn start() -> Running {
    let (process, addr, shutdown, dir) =
        common::single_voter_process(LivenessConfig::default()).await;
    let client = ControllerClient::new(
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy(),
    );
    Running {
        process,
        client,
        shutdown,
        _dir: dir,
    }
}

/// Registers broker `id` with `replication_endpoint` and heartbeats until
/// it is unfenced; returns its epoch.
async fn register_and_unfence(r: &mut Running, id: i32, replication_endpoint: String) -> i64 {
    let deadline = Instant::now() + WAIT;
    let epoch = loop {
        assert!(Instant::now() < deadline, "broker {id} not registered");
        let answer = r
            .client
            .register_broker(pb::RegisterBrokerRequest {
                broker_id: id,
                incarnation_id: format!("incarnation-{id}"),
                listeners: vec![pb::Endpoint {
                    name: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9092,
                }],
                rack: None,
                replication_endpoint: Some(replication_endpoint.clone()),
                http_endpoint: None,
            })
            .await;
        match answer.map(|a| a.into_inner()) {
            Ok(a) if a.status.as_ref().is_some_and(|s| s.error_code == 0) => break a.broker_epoch,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    loop {
        assert!(Instant::now() < deadline, "broker {id} not unfenced");
        let answer = r
            .client
            .broker_heartbeat(pb::BrokerHeartbeatRequest {
                broker_id: id,
                broker_epoch: epoch,
                applied_version: epoch as u64,
                want_shutdown: false,
            })
            .await
            .unwrap()
            .into_inner();
        if !answer.fenced {
            return epoch;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn open_session(
    r: &mut Running,
    id: i32,
    epoch: i64,
) -> tonic::Streaming<pb::BrokerSessionEvent> {
    let mut stream = r
        .client
        .broker_session(pb::BrokerSessionRequest {
            broker_id: id,
            broker_epoch: epoch,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.status.unwrap().error_code, 0);
    stream
}

fn fenced(r: &Running, id: i32) -> bool {
    r.process.node().image().borrow().brokers[&id].fenced
}

/// A port on which nothing listens (bound, then closed).
async fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_session_ends_and_whose_port_is_closed_is_fenced_at_once() {
    let mut r = start().await;
    let gone = closed_port().await;
    let epoch = register_and_unfence(&mut r, 1, gone).await;
    let stream = open_session(&mut r, 1, epoch).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!fenced(&r, 1));
    let ended = Instant::now();
    drop(stream);
    while !fenced(&r, 1) {
        assert!(
            ended.elapsed() < Duration::from_secs(3),
            "not fenced within 3 s of its session's end"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    r.shutdown.cancel();
    r.process.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_session_ends_while_its_port_listens_is_not_fenced() {
    let mut r = start().await;
    // Accepts connections and never answers, like a paused process.
    let listening = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let epoch = register_and_unfence(&mut r, 1, listening.local_addr().unwrap().to_string()).await;
    let stream = open_session(&mut r, 1, epoch).await;
    drop(stream);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!fenced(&r, 1), "fenced although its port listens");
    // A new session of the same registration is accepted.
    let _stream = open_session(&mut r, 1, epoch).await;
    r.shutdown.cancel();
    r.process.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_an_earlier_registration_is_refused() {
    let mut r = start().await;
    let gone = closed_port().await;
    let first = register_and_unfence(&mut r, 1, gone.clone()).await;
    let second = register_and_unfence(&mut r, 1, gone).await;
    assert!(second > first);
    let mut stream = r
        .client
        .broker_session(pb::BrokerSessionRequest {
            broker_id: 1,
            broker_epoch: first,
        })
        .await
        .unwrap()
        .into_inner();
    let answer = stream.message().await.unwrap().unwrap();
    assert_eq!(
        answer.status.unwrap().error_code,
        kraftwerk_controller::service::STALE_BROKER_EPOCH
    );
    assert!(stream.message().await.unwrap().is_none(), "the stream ends");
    r.shutdown.cancel();
    r.process.wait().await;
}
