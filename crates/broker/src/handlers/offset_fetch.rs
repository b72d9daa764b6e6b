//! OffsetFetch (9): committed offsets, -1 where there is none. All of a
//! group's offsets when `topics` is null; v8+ asks for several groups.
//! With `require_stable` (v7+), a partition whose offset is part of an
//! open transaction is answered UNSTABLE_OFFSET_COMMIT (retriable) until
//! the transaction ends.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kraftwerk_types::ErrorCode;

use super::{str_bytes, Request};
use crate::group::records::OffsetValue;
use crate::BrokerState;

use crate::group::FetchedOffsets as Fetched;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let v = req.version;
    if v >= 8 {
        let groups = body
            .groups
            .iter()
            .map(|g| {
                let topics = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let group_id = g.group_id.0.to_string();
                let unstable = unstable(state, &group_id, body.require_stable);
                let (code, fetched) = match fetch(state, &group_id, topics) {
                    Ok(f) => (ErrorCode::NONE, f),
                    Err(e) => (e, Vec::new()),
                };
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(code.code())
                    .with_topics(
                        fetched
                            .into_iter()
                            .map(|(name, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str_bytes(name.clone())))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, o)| {
                                                let held = unstable.contains(&(name.clone(), p));
                                                let (offset, epoch, meta) =
                                                    split(if held { None } else { o });
                                                let code = if held {
                                                    ErrorCode::UNSTABLE_OFFSET_COMMIT
                                                } else {
                                                    ErrorCode::NONE
                                                };
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(offset)
                                                    .with_committed_leader_epoch(epoch)
                                                    .with_metadata(Some(str_bytes(meta)))
                                                    .with_error_code(code.code())
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let group_id = body.group_id.0.to_string();
    let unstable = unstable(state, &group_id, v >= 7 && body.require_stable);
    let requested: Option<Vec<(String, Vec<i32>)>> = body.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let (code, fetched) = match fetch(state, &group_id, requested.clone()) {
        Ok(f) => (ErrorCode::NONE, f),
        // v1 has no top-level error: each requested partition carries it.
        Err(e) => (
            e,
            requested
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect()))
                .collect(),
        ),
    };
    let partition_code = if v < 2 { code } else { ErrorCode::NONE };
    let topics = fetched
        .into_iter()
        .map(|(name, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(name.clone())))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, o)| {
                            let held = unstable.contains(&(name.clone(), p));
                            let (offset, epoch, meta) = split(if held { None } else { o });
                            let code = if held {
                                ErrorCode::UNSTABLE_OFFSET_COMMIT
                            } else {
                                partition_code
                            };
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(if v >= 5 { epoch } else { -1 })
                                .with_metadata(Some(str_bytes(meta)))
                                .with_error_code(code.code())
                        })
                        .collect(),
                )
        })
        .collect();
    let mut resp = OffsetFetchResponse::default().with_topics(topics);
    if v >= 2 {
        resp = resp.with_error_code(code.code());
    }
    resp
}

fn split(o: Option<OffsetValue>) -> (i64, i32, String) {
    match o {
        Some(v) => (v.offset, v.leader_epoch, v.metadata),
        None => (-1, -1, String::new()),
    }
}

/// The partitions to answer UNSTABLE_OFFSET_COMMIT, when asked to.
fn unstable(
    state: &BrokerState,
    group_id: &str,
    require_stable: bool,
) -> std::collections::BTreeSet<(String, i32)> {
    if require_stable {
        state.groups.unstable_offsets(group_id)
    } else {
        Default::default()
    }
}

fn fetch(
    state: &BrokerState,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Fetched, ErrorCode> {
    state.groups.fetch_offsets(state, group_id, topics)
}
