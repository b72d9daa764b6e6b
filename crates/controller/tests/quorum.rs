//! Three controller nodes in one process: election, replicated writes, and
//! failover when the leader stops.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{create_topic, fast, Cluster};
use kraftwerk_controller::commands::CommandResult;
use kraftwerk_controller::ControllerError;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_commit_everywhere_and_survive_leader_loss() {
    let test = async {
        let mut cluster = Cluster::start(3, fast).await;
        let leader = cluster.wait_for_leader().await;

        // The first leader sets a cluster id, the same on every node.
        let mut cluster_ids = Vec::new();
        for id in 1..=3 {
            let image = cluster
                .wait_for_image(id, |i| !i.cluster_id.is_empty())
                .await;
            cluster_ids.push(image.cluster_id.clone());
        }
        assert!(
            cluster_ids
                .iter()
                .all(|c| *c == cluster_ids[0] && c.len() == 22),
            "{cluster_ids:?}"
        );

        // A follower refuses writes and names the leader.
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        match cluster.node(follower).write(create_topic("refused")).await {
            Err(ControllerError::NotLeader { leader_id }) => assert_eq!(leader_id, Some(leader)),
            other => panic!("a follower accepted a write: {other:?}"),
        }

        let result = cluster.write(create_topic("orders")).await;
        let CommandResult::Topic(record) = result else {
            panic!("unexpected result {result:?}")
        };
        assert_eq!(record.partitions.len(), 2);
        for id in 1..=3 {
            let image = cluster
                .wait_for_image(id, |i| i.topic("orders").is_some())
                .await;
            assert_eq!(image.topic("orders"), Some(&record));
            assert_eq!(
                image.topic_by_id(&record.id).map(|t| t.name.as_str()),
                Some("orders")
            );
        }
        let status = cluster.node(leader).quorum_status();
        assert_eq!(status.leader_id, Some(leader));
        assert_eq!(status.voters.len(), 3);
        assert!(
            status
                .voters
                .iter()
                .all(|(_, _, matched)| matched.is_some()),
            "{status:?}"
        );

        // The leader stops; the other two elect a new one and keep writing.
        let stopped_at = Instant::now();
        cluster.stop_node(leader).await;
        let new_leader = cluster.wait_for_leader().await;
        let failover = stopped_at.elapsed();
        assert_ne!(new_leader, leader);
        assert!(
            failover < Duration::from_secs(5),
            "failover took {failover:?}"
        );
        eprintln!("failover from {leader} to {new_leader} took {failover:?}");
        cluster.write(create_topic("payments")).await;
        for (id, _) in cluster.running() {
            cluster
                .wait_for_image(id, |i| i.topic("payments").is_some())
                .await;
        }

        // The old leader comes back as a follower and catches up.
        cluster.restart_node(leader).await;
        let image = cluster
            .wait_for_image(leader, |i| i.topic("payments").is_some())
            .await;
        assert!(image.topic("orders").is_some());
        cluster.stop_all().await;
    };
    tokio::time::timeout(Duration::from_secs(90), test)
        .await
        .expect("the test finishes within 90 s");
}
