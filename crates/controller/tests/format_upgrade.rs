//! A quorum whose stores were written with the previous leader ids (format 1:
//! (term, node), two leaders possible in one term) opens them, converts
//! them, and goes on as one quorum, with the entries of the losing leader of
//! a doubly led term replaced rather than taken for the winner's.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{create_topic, fast, Cluster};
use kraftwerk_controller::commands::MetadataCommand;
use kraftwerk_controller::raft::open_db;
use openraft::{BasicNode, Membership};
use serde_json::{json, Value};

fn v1_log_id(term: u64, node_id: u64, index: u64) -> Value {
    json!({"leader_id": {"term": term, "node_id": node_id}, "index": index})
}

fn v1_vote(term: u64, node_id: u64) -> Value {
    json!({"leader_id": {"term": term, "node_id": node_id}, "committed": true})
}

/// Replaces node `dir`'s store with a format-1 one: `entries` from index 0
/// (the membership) on, `vote`, and `committed` if any.
async fn write_v1_store(
    dir: &std::path::Path,
    addrs: &BTreeMap<u64, String>,
    entries: &[((u64, u64), Value)],
    vote: Value,
    committed: Option<Value>,
) {
    let db = open_db(dir).await.unwrap();
    let log = db.open_tree("log").unwrap();
    let meta = db.open_tree("log_meta").unwrap();
    for tree in [&log, &meta, &db.open_tree("snapshot").unwrap()] {
        tree.clear().unwrap();
    }
    let voters: BTreeSet<u64> = addrs.keys().copied().collect();
    let nodes: BTreeMap<u64, BasicNode> = addrs
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect();
    let membership = Membership::new(vec![voters], nodes);
    let mut all = vec![(v1_log_id(0, 0, 0), json!({ "Membership": membership }))];
    for (index, ((term, node), payload)) in entries.iter().enumerate() {
        all.push((v1_log_id(*term, *node, index as u64 + 1), payload.clone()));
    }
    for (index, (log_id, payload)) in all.into_iter().enumerate() {
        let entry = json!({"log_id": log_id, "payload": payload});
        log.insert(
            (index as u64).to_be_bytes(),
            serde_json::to_vec(&entry).unwrap(),
        )
        .unwrap();
    }
    meta.insert("vote", serde_json::to_vec(&vote).unwrap())
        .unwrap();
    if let Some(c) = committed {
        meta.insert("committed", serde_json::to_vec(&c).unwrap())
            .unwrap();
    }
    db.flush_async().await.unwrap();
}

fn normal(command: MetadataCommand) -> Value {
    json!({ "Normal": command })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_of_format_1_stores_converts_and_converges() {
    let test = async {
        let mut cluster = Cluster::start(3, fast).await;
        cluster.stop_all().await;

        // Term 1 had two leaders. Node 2 led first (T1-N2) with node 1's
        // vote and wrote two entries that only node 1 kept; node 3 then won
        // term 1 too (T1-N3, node 2 switching its vote to the greater leader
        // id), and its entries were committed on nodes 2 and 3.
        let init = normal(MetadataCommand::InitCluster {
            cluster_id: "c1".to_string(),
        });
        let lost = normal(create_topic("lost"));
        let kept = normal(create_topic("kept"));
        write_v1_store(
            cluster.dirs[&1].path(),
            &cluster.addrs,
            &[((1, 2), json!("Blank")), ((1, 2), lost)],
            v1_vote(1, 2),
            None,
        )
        .await;
        for id in [2, 3] {
            write_v1_store(
                cluster.dirs[&id].path(),
                &cluster.addrs,
                &[
                    ((1, 3), json!("Blank")),
                    ((1, 3), init.clone()),
                    ((1, 3), kept.clone()),
                ],
                v1_vote(1, 3),
                Some(v1_log_id(1, 3, 3)),
            )
            .await;
        }

        for id in 1..=3 {
            cluster.restart_node(id).await;
        }
        cluster.wait_for_leader().await;
        cluster.write(create_topic("after")).await;
        for id in 1..=3 {
            let image = cluster
                .wait_for_image(id, |i| i.topic("after").is_some())
                .await;
            assert_eq!(image.cluster_id, "c1", "node {id}");
            assert!(image.topic("kept").is_some(), "node {id}");
            assert!(
                image.topic("lost").is_none(),
                "node {id} applied the losing leader's entry"
            );
            // The old T1-N3 (stride 4: term 7) or later.
            let term = cluster.node(id).raft().metrics().borrow().current_term;
            assert!(term >= 7, "node {id} is in term {term}");
        }
        cluster.stop_all().await;
    };
    tokio::time::timeout(Duration::from_secs(90), test)
        .await
        .expect("the test finishes within 90 s");
}
