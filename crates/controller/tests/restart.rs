//! The metadata survives a restart of the whole quorum.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{create_topic, fast, Cluster};
use kraftwerk_controller::commands::MetadataCommand;
use kraftwerk_controller::ControllerConfig;

/// Snapshots every few entries, purging the log behind them, so a restart
/// needs both the stored snapshot and the log entries after it.
fn frequent_snapshots(config: &mut ControllerConfig) {
    fast(config);
    config.snapshot_logs_since_last = 3;
    config.max_in_snapshot_log_to_keep = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_restart_keeps_the_image() {
    let test = async {
        let mut cluster = Cluster::start(3, frequent_snapshots).await;
        cluster.wait_for_leader().await;
        for name in ["a", "b", "c"] {
            cluster.write(create_topic(name)).await;
        }
        cluster
            .write(MetadataCommand::AllocateProducerIds { count: 1000 })
            .await;
        cluster
            .write(MetadataCommand::DeleteTopic {
                name: "b".to_string(),
            })
            .await;
        let leader = cluster.wait_for_leader().await;
        let before = cluster
            .wait_for_image(leader, |i| {
                !i.cluster_id.is_empty() && i.topic("b").is_none()
            })
            .await;
        assert!(before.topic("a").is_some() && before.topic("c").is_some());
        for id in 1..=3 {
            cluster.wait_for_image(id, |i| *i == *before).await;
        }

        for id in 1..=3 {
            let snapshot = cluster.node(id).raft().metrics().borrow().snapshot;
            assert!(snapshot.is_some(), "node {id} has built no snapshot");
        }

        cluster.stop_all().await;
        // One node alone has no quorum, yet rebuilds the committed image
        // from its snapshot and the committed entries after it.
        cluster.restart_node(1).await;
        cluster.wait_for_image(1, |i| *i == *before).await;
        for id in 2..=3 {
            cluster.restart_node(id).await;
        }
        cluster.wait_for_leader().await;
        for id in 1..=3 {
            let image = cluster.wait_for_image(id, |i| *i == *before).await;
            let a = image.topic("a").unwrap();
            assert_eq!(
                image.topic_by_id(&a.id).map(|t| t.name.as_str()),
                Some("a"),
                "lookup tables rebuilt"
            );
        }
        // The quorum still takes writes, and keeps the cluster id it had.
        cluster.write(create_topic("d")).await;
        for id in 1..=3 {
            let image = cluster.wait_for_image(id, |i| i.topic("d").is_some()).await;
            assert_eq!(image.cluster_id, before.cluster_id);
        }
        cluster.stop_all().await;
    };
    tokio::time::timeout(Duration::from_secs(90), test)
        .await
        .expect("the test finishes within 90 s");
}
