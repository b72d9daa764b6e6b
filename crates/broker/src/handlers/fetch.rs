//! Fetch (1): whole batches read from the segment files as stored, up to
//! the high watermark (read_uncommitted) or the last stable offset
//! (read_committed, which also gets the aborted transactions in the range
//! so that the client can skip their records), with the long poll of
//! `max_wait_ms`/`min_bytes`.
//! Fetch sessions (KIP-227) are not kept: every fetch is a full one, which
//! the protocol allows by answering with session id 0.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use kraftwerk_replication::partition::any_changed;
use kraftwerk_storage::StorageError;
use kraftwerk_types::{ErrorCode, TopicId};
use tokio::sync::watch;

use super::{authorized_on_topic, str_bytes, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

const READ_COMMITTED: i8 = 1;

pub async fn handle(state: &BrokerState, req: &Request<'_>, body: FetchRequest) -> FetchResponse {
    if body.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(ErrorCode::FETCH_SESSION_ID_NOT_FOUND.code())
            .with_session_id(0);
    }
    let max_wait = Duration::from_millis(body.max_wait_ms.max(0) as u64);
    let deadline = tokio::time::Instant::now() + max_wait;
    let mut watched = Vec::new();
    loop {
        watched.clear();
        let (responses, bytes, has_error) = read_once(state, req, &body, &mut watched).await;
        let done = bytes >= body.min_bytes.max(0) as usize
            || has_error
            || tokio::time::Instant::now() >= deadline;
        if done {
            return throttled(state, req, responses);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = any_changed(&mut watched) => {}
            _ = state.shutdown.cancelled() => {}
        }
        if state.shutdown.is_cancelled() {
            let (responses, _, _) = read_once(state, req, &body, &mut watched).await;
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(responses);
        }
    }
}

/// The answer, unless it would take the client over its fetch quota: then
/// an empty answer with the throttle time, its bytes not counted (the
/// client fetches the same offsets again), as Kafka does.
fn throttled(
    state: &BrokerState,
    req: &Request<'_>,
    responses: Vec<FetchableTopicResponse>,
) -> FetchResponse {
    let bytes: u64 = responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
        .sum();
    let throttle_ms = req.charge(state, crate::quotas::CONSUMER_BYTE_RATE, bytes, false);
    let response = FetchResponse::default()
        .with_session_id(0)
        .with_throttle_time_ms(throttle_ms);
    if throttle_ms > 0 {
        response
    } else {
        response.with_responses(responses)
    }
}

/// One pass over the requested partitions: (answers, bytes, any error).
/// Each partition read is watched from before its read, into `watched`.
async fn read_once(
    state: &BrokerState,
    req: &Request<'_>,
    body: &FetchRequest,
    watched: &mut Vec<watch::Receiver<u64>>,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let version = req.version;
    let image = state.image.load();
    let read_committed = body.isolation_level == READ_COMMITTED;
    let max_bytes = if version >= 3 {
        body.max_bytes.max(0) as usize
    } else {
        usize::MAX
    };
    let mut used = 0usize;
    let mut has_error = false;
    let mut out = Vec::with_capacity(body.topics.len());
    for topic in &body.topics {
        let (name, by_id_missing) = if version >= 13 {
            match image.topic_by_id(&TopicId(topic.topic_id)) {
                Some(t) => (t.name.clone(), false),
                None => (String::new(), true),
            }
        } else {
            (topic.topic.0.to_string(), false)
        };
        let allowed = by_id_missing || authorized_on_topic(state, req, op::READ, &name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for fp in &topic.partitions {
            let mut pd = PartitionData::default()
                .with_partition_index(fp.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica(BrokerId(-1))
                .with_aborted_transactions(if read_committed {
                    Some(Vec::new())
                } else {
                    None
                });
            let code = async {
                if by_id_missing {
                    return Err(ErrorCode::UNKNOWN_TOPIC_ID);
                }
                if !allowed {
                    return Err(ErrorCode::TOPIC_AUTHORIZATION_FAILED);
                }
                let partition = super::led_partition(
                    state,
                    &image,
                    &name,
                    fp.partition,
                    fp.current_leader_epoch,
                )?;
                watched.push(partition.replication.subscribe());
                let high_watermark = partition.high_watermark();
                let last_stable = partition.last_stable_offset();
                pd.high_watermark = high_watermark;
                pd.last_stable_offset = last_stable;
                pd.log_start_offset = partition.log.log_start_offset();
                let limit =
                    (fp.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(used));
                let max_offset = if read_committed {
                    last_stable
                } else {
                    high_watermark
                };
                let records = match partition
                    .read(fp.fetch_offset, limit, max_offset, used == 0)
                    .await
                {
                    Ok(r) => r,
                    Err(e @ StorageError::OffsetOutOfRange { .. }) => {
                        tracing::debug!(topic = %name, partition = fp.partition, error = %e, "fetch out of range");
                        return Err(ErrorCode::OFFSET_OUT_OF_RANGE);
                    }
                    Err(e) => {
                        tracing::error!(topic = %name, partition = fp.partition, error = %e, "fetch read failed");
                        return Err(e.error_code());
                    }
                };
                used += records.len();
                state.metrics.fetched(&name, records.len() as u64);
                if read_committed && !records.is_empty() {
                    let aborted = partition
                        .log
                        .aborted_transactions(fp.fetch_offset, last_stable)
                        .into_iter()
                        .map(|a| {
                            AbortedTransaction::default()
                                .with_producer_id(ProducerId(a.producer_id))
                                .with_first_offset(a.first_offset)
                        })
                        .collect();
                    pd.aborted_transactions = Some(aborted);
                }
                pd.records = Some(records);
                Ok(())
            }
            .await;
            if let Err(code) = code {
                has_error = true;
                pd.error_code = code.code();
                pd.records = Some(Bytes::new());
                // As Kafka: an errored partition carries no offsets.
                pd.high_watermark = -1;
                pd.last_stable_offset = -1;
                pd.log_start_offset = -1;
                // As Kafka: a partition refused before any read (unknown
                // topic or partition) keeps the empty aborted-transaction
                // list; one whose read failed (out of range, leader epoch,
                // not the leader, storage) carries none.
                if code != ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                    && code != ErrorCode::UNKNOWN_TOPIC_ID
                {
                    pd.aborted_transactions = None;
                }
            }
            partitions.push(pd);
        }
        out.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(str_bytes(name)))
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    (out, used, has_error)
}
