//! A node that was down while the others wrote past their purged log
//! catches up from a snapshot (InstallSnapshot) after it restarts.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{create_topic, fast, Cluster, WAIT};
use kraftwerk_controller::commands::MetadataCommand;
use kraftwerk_controller::ControllerConfig;

const SNAPSHOT_EVERY: u64 = 20;

fn small_snapshots(config: &mut ControllerConfig) {
    fast(config);
    config.snapshot_logs_since_last = SNAPSHOT_EVERY;
    config.max_in_snapshot_log_to_keep = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_node_installs_a_snapshot() {
    let test = async {
        let mut cluster = Cluster::start(3, small_snapshots).await;
        let leader = cluster.wait_for_leader().await;
        cluster.write(create_topic("before")).await;
        let down = (1..=3).find(|id| *id != leader).unwrap();
        cluster
            .wait_for_image(down, |i| i.topic("before").is_some())
            .await;
        let down_last_log = cluster.node(down).quorum_status().last_log_index.unwrap();
        cluster.stop_node(down).await;

        // Far more entries than a snapshot interval, so the leader snapshots
        // and purges the entries the stopped node lacks.
        for i in 0..(SNAPSHOT_EVERY * 4) {
            if i % 10 == 0 {
                cluster.write(create_topic(&format!("t{i}"))).await;
            } else {
                cluster
                    .write(MetadataCommand::AllocateProducerIds { count: 10 })
                    .await;
            }
        }
        let leader = cluster.wait_for_leader().await;
        let deadline = Instant::now() + WAIT;
        loop {
            let purged = cluster.node(leader).raft().metrics().borrow().purged;
            if purged.is_some_and(|p| p.index > down_last_log + 1) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "leader did not purge past {down_last_log}: {purged:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let expected = cluster.node(leader).image().borrow().clone();

        cluster.restart_node(down).await;
        let image = cluster.wait_for_image(down, |i| *i == *expected).await;
        assert_eq!(image.next_producer_id, expected.next_producer_id);
        let snapshot = cluster.node(down).raft().metrics().borrow().snapshot;
        assert!(
            snapshot.is_some_and(|s| s.index > down_last_log),
            "installed snapshot: {snapshot:?}"
        );

        // And it keeps following by log entries afterwards.
        cluster.write(create_topic("after")).await;
        cluster
            .wait_for_image(down, |i| i.topic("after").is_some())
            .await;
        cluster.stop_all().await;
    };
    tokio::time::timeout(Duration::from_secs(90), test)
        .await
        .expect("the test finishes within 90 s");
}
