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
use std::collections::BTreeSet;

use kraftwerk_types::ErrorCode;

use super::{authorized_on_group, authorized_on_topic, str_bytes, Request};
use crate::group::records::OffsetValue;
use crate::security::authorizer::op;
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
                let (code, fetched, denied) = match fetch(state, req, &group_id, topics) {
                    Ok((f, denied)) => (ErrorCode::NONE, f, denied),
                    Err(e) => (e, Vec::new(), BTreeSet::new()),
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
                                                let code = if denied.contains(&name) {
                                                    ErrorCode::TOPIC_AUTHORIZATION_FAILED
                                                } else if held {
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
    let (code, fetched, denied) = match fetch(state, req, &group_id, requested.clone()) {
        Ok((f, denied)) => (ErrorCode::NONE, f, denied),
        // v1 has no top-level error: each requested partition carries it.
        Err(e) => (
            e,
            requested
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect()))
                .collect(),
            BTreeSet::new(),
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
                            let code = if denied.contains(&name) {
                                ErrorCode::TOPIC_AUTHORIZATION_FAILED
                            } else if held {
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

/// The group's committed offsets, as far as the client may see them:
/// DESCRIBE on the group, and on each topic (a requested topic it may not
/// describe is answered TOPIC_AUTHORIZATION_FAILED, named in the second
/// value; when all topics are asked for, such topics are left out).
fn fetch(
    state: &BrokerState,
    req: &Request<'_>,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<(Fetched, BTreeSet<String>), ErrorCode> {
    if !authorized_on_group(state, req, op::DESCRIBE, group_id) {
        return Err(ErrorCode::GROUP_AUTHORIZATION_FAILED);
    }
    let allowed = |t: &str| authorized_on_topic(state, req, op::DESCRIBE, t);
    let mut denied = BTreeSet::new();
    let mut denied_partitions = Vec::new();
    let asked = topics.map(|ts| {
        ts.into_iter()
            .filter(|(t, ps)| {
                let ok = allowed(t);
                if !ok {
                    denied.insert(t.clone());
                    denied_partitions.push((t.clone(), ps.iter().map(|p| (*p, None)).collect()));
                }
                ok
            })
            .collect::<Vec<_>>()
    });
    let all = asked.is_none();
    let mut fetched = match asked {
        Some(ts) if ts.is_empty() => Vec::new(),
        other => state.groups.fetch_offsets(state, group_id, other)?,
    };
    if all {
        fetched.retain(|(t, _)| allowed(t));
    }
    fetched.extend(denied_partitions);
    Ok((fetched, denied))
}
