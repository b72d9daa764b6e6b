//! The leader's answer to a follower fetch: checks the follower's leader
//! epoch (FENCED_LEADER_EPOCH when the follower's is older, so a stale
//! follower refreshes; UNKNOWN_LEADER_EPOCH when it is newer, so this stale
//! leader stops being fed), checks its last fetched epoch against the
//! leader-epoch cache (a diverging epoch tells it where to truncate),
//! records its progress (which may advance the high watermark) and returns
//! whole batches up to the log end offset, as stored. A fetch whose broker
//! epoch is older than one already seen from that follower comes from an
//! earlier incarnation of it (KIP-903): it is answered with
//! NOT_LEADER_OR_FOLLOWER and counts for nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kraftwerk_rpc::replication as pb;
use kraftwerk_storage::StorageError;
use kraftwerk_types::{ErrorCode, TopicPartition};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::partition::any_changed;
use crate::ReplicaSource;

/// The longest a leader holds a follower fetch, whatever the follower asks.
pub const FETCH_WAIT_MAX: Duration = Duration::from_secs(5);
/// Per-partition bytes cap, whatever the follower asks.
const PARTITION_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Answers one follower fetch, long-polling up to `max_wait_ms` for
/// `min_bytes`.
/// Reads of closed segments (a follower catching up from far behind) run
/// on tokio's blocking pool; reads at the tail run in place.
pub async fn serve_fetch(
    source: &Arc<dyn ReplicaSource>,
    request: &pb::FetchRequest,
    shutdown: &CancellationToken,
) -> pb::FetchResponse {
    let wait = Duration::from_millis(request.max_wait_ms as u64).min(FETCH_WAIT_MAX);
    let deadline = tokio::time::Instant::now() + wait;
    let mut watched = Vec::new();
    loop {
        watched.clear();
        let (partitions, bytes, urgent) = if reads_may_block(&**source, request) {
            let (source, request) = (source.clone(), request.clone());
            let read = tokio::task::spawn_blocking(move || {
                let mut watched = Vec::new();
                let read = read_once(&*source, &request, &mut watched, Instant::now());
                (read, watched)
            })
            .await;
            match read {
                Ok((read, blocking_watched)) => {
                    watched = blocking_watched;
                    read
                }
                Err(e) => {
                    tracing::error!(error = %e, "a replica fetch read task failed");
                    return pb::FetchResponse::default();
                }
            }
        } else {
            read_once(&**source, request, &mut watched, Instant::now())
        };
        if urgent
            || bytes >= request.min_bytes.max(0) as usize
            || tokio::time::Instant::now() >= deadline
            || shutdown.is_cancelled()
        {
            return pb::FetchResponse { partitions };
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = any_changed(&mut watched) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

/// Whether a follower fetch reads a closed segment of any partition.
fn reads_may_block(source: &dyn ReplicaSource, request: &pb::FetchRequest) -> bool {
    request.partitions.iter().any(|fp| {
        source
            .replica(&TopicPartition::new(fp.topic.clone(), fp.partition))
            .is_some_and(|replica| replica.log().read_may_block(fp.fetch_offset))
    })
}

/// One pass over the requested partitions: (answers, bytes, urgent). An
/// answer is urgent when it carries an error or a diverging epoch. Each
/// partition read is watched from before its read, into `watched`.
/// Follower progress is recorded as of `now`; [`serve_fetch`] passes the
/// clock, the deterministic simulation (`crates/sim`) its simulated time.
pub fn read_once(
    source: &dyn ReplicaSource,
    request: &pb::FetchRequest,
    watched: &mut Vec<watch::Receiver<u64>>,
    now: Instant,
) -> (Vec<pb::FetchedPartition>, usize, bool) {
    let mut out = Vec::with_capacity(request.partitions.len());
    let mut bytes = 0usize;
    let mut urgent = false;
    let per_partition = (request.max_bytes.max(1) as usize).min(PARTITION_BYTES_MAX);
    for fp in &request.partitions {
        let mut answer = pb::FetchedPartition {
            topic: fp.topic.clone(),
            partition: fp.partition,
            error_code: 0,
            high_watermark: -1,
            log_start_offset: -1,
            log_end_offset: -1,
            records: Bytes::new(),
            diverging_epoch: None,
        };
        match read_partition(
            source,
            request.replica_id,
            request.broker_epoch,
            fp,
            per_partition,
            &mut answer,
            watched,
            now,
        ) {
            Ok(()) => {
                bytes += answer.records.len();
                urgent |= answer.diverging_epoch.is_some();
            }
            Err(code) => {
                answer.error_code = code.code() as i32;
                urgent = true;
            }
        }
        out.push(answer);
    }
    (out, bytes, urgent)
}

// One argument per thing a fetch is answered from; grouping them would
// only move the list into a struct used once.
#[allow(clippy::too_many_arguments)]
fn read_partition(
    source: &dyn ReplicaSource,
    replica_id: i32,
    broker_epoch: i64,
    fp: &pb::FetchPartition,
    max_bytes: usize,
    answer: &mut pb::FetchedPartition,
    watched: &mut Vec<watch::Receiver<u64>>,
    now: Instant,
) -> Result<(), ErrorCode> {
    let tp = TopicPartition::new(fp.topic.clone(), fp.partition);
    let replica = source
        .replica(&tp)
        .ok_or(ErrorCode::NOT_LEADER_OR_FOLLOWER)?;
    let state = replica.replication();
    watched.push(state.subscribe());
    let view = state.view();
    if view.leader != state.local_id() {
        return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER);
    }
    if fp.current_leader_epoch < view.leader_epoch {
        return Err(ErrorCode::FENCED_LEADER_EPOCH);
    }
    if fp.current_leader_epoch > view.leader_epoch {
        return Err(ErrorCode::UNKNOWN_LEADER_EPOCH);
    }
    if !view.replicas.contains(&replica_id) || replica_id == state.local_id() {
        return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER);
    }
    let log = replica.log();
    answer.log_start_offset = log.log_start_offset();
    answer.log_end_offset = log.log_end_offset();
    answer.high_watermark = state.high_watermark();
    if fp.last_fetched_epoch >= 0 {
        let diverging = match end_offset_for_epoch(log, fp.last_fetched_epoch, view.leader_epoch) {
            Some((epoch, end)) => {
                (epoch < fp.last_fetched_epoch || end < fp.fetch_offset).then_some((epoch, end))
            }
            None => Some((-1, -1)),
        };
        if let Some((epoch, end_offset)) = diverging {
            answer.diverging_epoch = Some(pb::EpochEndOffset { epoch, end_offset });
            return Ok(());
        }
    }
    let log_end_offset = answer.log_end_offset;
    if fp.fetch_offset > log_end_offset || fp.fetch_offset < answer.log_start_offset {
        return Err(ErrorCode::OFFSET_OUT_OF_RANGE);
    }
    // A high watermark this fetch moves wakes the partition's waiters
    // (consumers, acks=all produces) through its watch.
    if let Err(stale) = state.on_follower_fetch(
        replica_id,
        broker_epoch,
        fp.fetch_offset,
        log_end_offset,
        now,
    ) {
        tracing::info!(partition = %tp.topic, index = tp.partition, follower = replica_id, broker_epoch = stale.fetched, latest_broker_epoch = stale.latest, "ignoring a fetch of an earlier incarnation of the follower");
        return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER);
    }
    answer.high_watermark = state.high_watermark();
    answer.records = match log.read(fp.fetch_offset, max_bytes, i64::MAX, true) {
        Ok(records) => records,
        Err(StorageError::OffsetOutOfRange { .. }) => return Err(ErrorCode::OFFSET_OUT_OF_RANGE),
        Err(e) => {
            tracing::error!(partition = %tp.topic, index = tp.partition, error = %e, "replica fetch read failed");
            return Err(e.error_code());
        }
    };
    Ok(())
}

/// Where the leader's log says epoch `requested` ends: its leader-epoch
/// cache, completed with the current `leader_epoch`. Kafka's leader enters
/// its epoch in the cache the moment it takes over (at its log end offset);
/// this log records an epoch at its first append. Without that entry, a
/// follower holding an epoch newer than any this leader wrote in (but older
/// than the current one: written by a leader this one never followed)
/// got no answer, `(-1, -1)`, and cut its log to its own high watermark,
/// possibly below what this leader had committed, while it stayed in the
/// ISR. (Found by the deterministic simulation, `crates/sim`, seeds 1188
/// and 1370.) Nothing is written in `leader_epoch` yet in that case, so it
/// starts at the log end offset.
fn end_offset_for_epoch(
    log: &kraftwerk_storage::Log,
    requested: i32,
    leader_epoch: i32,
) -> Option<(i32, i64)> {
    if let Some(found) = log.end_offset_for_epoch(requested) {
        return Some(found);
    }
    if requested < 0 || requested >= leader_epoch {
        return None;
    }
    let floor = log
        .latest_epoch()
        .filter(|latest| *latest <= requested)
        .unwrap_or(requested);
    Some((floor, log.log_end_offset()))
}
