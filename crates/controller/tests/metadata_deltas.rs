//! `FetchMetadata` deltas: a broker that holds the image at some version
//! and applies the commands the controller sends since then reaches exactly
//! the controller's image, as one that fetched the whole image does.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use kraftwerk_controller::commands::{apply, MetadataCommand};
use kraftwerk_controller::service::LivenessConfig;
use kraftwerk_metadata::MetadataImage;
use kraftwerk_rpc::controller as pb;
use kraftwerk_rpc::controller::controller_client::ControllerClient;
use kraftwerk_rpc::wire;
use kraftwerk_types::TopicId;
use tonic::transport::Channel;

async fn fetch(
    client: &mut ControllerClient<Channel>,
    known_version: u64,
    accept_deltas: bool,
) -> pb::FetchMetadataResponse {
    client
        .fetch_metadata(pb::FetchMetadataRequest {
            known_version,
            max_wait_ms: 0,
            accept_deltas,
        })
        .await
        .unwrap()
        .into_inner()
}

fn whole(r: &pb::FetchMetadataResponse) -> MetadataImage {
    assert_eq!(r.delta_base, None);
    wire::image_from_wire(r.image.clone().expect("the whole image")).unwrap()
}

fn create(name: &str) -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: name.into(),
        topic_id: TopicId::random(),
        assignments: vec![vec![1], vec![1]],
        configs: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_applied_to_an_older_image_give_the_controllers_image() {
    let (process, addr, shutdown, _dir) =
        common::single_voter_process(LivenessConfig::default()).await;
    let node = process.node().clone();
    node.wait_for_leader(Duration::from_secs(20)).await.unwrap();
    let mut client = ControllerClient::new(
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy(),
    );

    node.write(create("orders")).await.unwrap();
    let older = whole(&fetch(&mut client, 0, true).await);
    assert!(older.topic("orders").is_some());

    for command in [
        create("payments"),
        MetadataCommand::AlterTopicConfigs {
            name: "payments".into(),
            changes: vec![("retention.ms".into(), Some("1000".into()))],
        },
        MetadataCommand::DeleteTopic {
            name: "orders".into(),
        },
        MetadataCommand::AllocateProducerIds { count: 1000 },
    ] {
        node.write(command).await.unwrap();
    }

    let delta = fetch(&mut client, older.version, true).await;
    assert_eq!(delta.delta_base, Some(older.version));
    assert!(delta.image.is_none(), "deltas come without the whole image");
    assert_eq!(delta.deltas.len(), 4);
    let mut image = older.clone();
    for d in &delta.deltas {
        let command: MetadataCommand =
            wire::command_from_wire(d.command.clone().expect("a command")).unwrap();
        apply(&mut image, &command, d.index);
    }
    assert_eq!(image.version, delta.version);

    let current = whole(&fetch(&mut client, older.version, false).await);
    assert_eq!(image, current);
    assert!(image.topic("orders").is_none());
    assert_eq!(
        image.topic("payments").unwrap().configs["retention.ms"],
        "1000"
    );

    // Nothing new: an empty delta at the same version.
    let same = fetch(&mut client, current.version, true).await;
    assert_eq!(
        (same.delta_base, same.deltas.len()),
        (Some(current.version), 0)
    );
    assert_eq!(same.version, current.version);

    shutdown.cancel();
    process.wait().await;
}
