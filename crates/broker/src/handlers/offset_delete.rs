//! OffsetDelete (47): deletes committed offsets of a group, except those
//! of topics a member of a `consumer` group is subscribed to.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kraftwerk_types::ErrorCode;

use super::Request;
use crate::group::records;
use crate::group::state::GroupState;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    _req: &Request<'_>,
    body: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group_id = body.group_id.0.to_string();
    let err = |e: ErrorCode| OffsetDeleteResponse::default().with_error_code(e.code());
    let owned = match state.groups.owns(state, &group_id) {
        Ok(o) => o,
        Err(e) => return err(e),
    };
    let Some(group) = state.groups.group(&group_id) else {
        return err(ErrorCode::GROUP_ID_NOT_FOUND);
    };
    let image = state.image.load();
    let mut g = group.lock();
    let subscribed = match g.state {
        GroupState::Dead => return err(ErrorCode::GROUP_ID_NOT_FOUND),
        GroupState::Empty => Default::default(),
        _ => match g.subscribed_topics() {
            Some(s) => s,
            None => return err(ErrorCode::NON_EMPTY_GROUP),
        },
    };
    let mut tombstones = Vec::new();
    let mut deleted = Vec::new();
    let topics = body
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if subscribed.contains(&name) {
                        ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC
                    } else if image.partition(&name, p.partition_index).is_none() {
                        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        let key = (name.clone(), p.partition_index);
                        if g.offsets.contains_key(&key) {
                            tombstones.push((
                                records::offset_key(&group_id, &name, p.partition_index),
                                None,
                            ));
                            deleted.push(key);
                        }
                        ErrorCode::NONE
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code.code())
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    if let Err(e) = state.groups.append(state, owned.partition, tombstones) {
        return err(e);
    }
    for k in deleted {
        g.offsets.remove(&k);
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
