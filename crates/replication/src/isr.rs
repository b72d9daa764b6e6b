//! The leader's periodic duties: ISR shrink and expansion through the
//! controller, and the high-watermark checkpoint.
//!
//! The ISR is never changed locally: the leader proposes `AlterPartition`
//! with the partition epoch it knows (and, for each replica it adds, the
//! broker epoch of that replica's fetches), and applies the result only
//! when the committed metadata image arrives. A refused change (stale
//! partition epoch, ineligible replica) is dropped; the next image, or the
//! replica's next fetches, bring the current state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{checkpoint, AlterIsrError, IsrControl, ReplicaSource, ReplicationConfig};

/// How often leaders look for ISR changes. Well below
/// `replica.lag.time.max.ms`, so a shrink comes at most this late.
pub const ISR_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// How often a leader logs the replicas it leads that are outside the ISR.
const OUTSIDE_ISR_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Runs until `shutdown`: proposes ISR changes for partitions led here.
pub async fn isr_loop(
    local_id: i32,
    source: Arc<dyn ReplicaSource>,
    control: Arc<dyn IsrControl>,
    config: ReplicationConfig,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut tick = tokio::time::interval(ISR_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_report = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let report = last_report.elapsed() >= OUTSIDE_ISR_REPORT_INTERVAL;
        if report {
            last_report = Instant::now();
        }
        for (tp, replica) in source.all_replicas() {
            let state = replica.replication();
            let log_end_offset = replica.log().log_end_offset();
            if report {
                for (follower, fetched, high_watermark, epoch_start) in state.replicas_outside_isr()
                {
                    tracing::info!(partition = %tp.topic, index = tp.partition, follower, fetch_offset = fetched, high_watermark, leader_epoch_start_offset = epoch_start, log_end_offset, "replica outside the ISR");
                }
            }
            let Some(change) =
                state.isr_change_due(log_end_offset, Instant::now(), config.replica_lag_time_max)
            else {
                continue;
            };
            let partition_epoch = change.partition_epoch;
            tracing::info!(partition = %tp.topic, index = tp.partition, isr = ?change.isr, partition_epoch, added_broker_epochs = ?change.added_broker_epochs, "proposing ISR change");
            let control = control.clone();
            let replica = replica.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                let result = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = control.alter_partition(tp.clone(), local_id, change) => r,
                };
                match result {
                    Ok(()) => {}
                    Err(AlterIsrError::StalePartitionEpoch) => {
                        tracing::info!(partition = %tp.topic, index = tp.partition, "ISR change refused: stale partition epoch; waiting for the newer image");
                        replica.replication().isr_change_failed(partition_epoch);
                    }
                    Err(AlterIsrError::IneligibleReplica(reason)) => {
                        tracing::info!(partition = %tp.topic, index = tp.partition, %reason, "ISR change refused: ineligible replica; keeping the ISR, later fetches try again");
                        replica.replication().isr_change_failed(partition_epoch);
                    }
                    Err(e) => {
                        tracing::warn!(partition = %tp.topic, index = tp.partition, error = %e, "ISR change refused");
                        replica.replication().isr_change_failed(partition_epoch);
                    }
                }
            });
        }
    }
}

/// Writes every partition's high watermark to `dir` now.
pub fn write_checkpoint(source: &dyn ReplicaSource, dir: &std::path::Path) {
    let mut entries: Vec<_> = source
        .all_replicas()
        .into_iter()
        .map(|(tp, r)| (tp, r.replication().high_watermark()))
        .collect();
    entries.sort_by(|a, b| (&a.0.topic, a.0.partition).cmp(&(&b.0.topic, b.0.partition)));
    if let Err(e) = checkpoint::write(dir, &entries) {
        tracing::warn!(dir = %dir.display(), error = %e, "high-watermark checkpoint not written");
    }
}

/// Runs until `shutdown`: checkpoints the high watermarks every
/// `replica.high.watermark.checkpoint.interval.ms`, and once more at the end.
pub async fn checkpoint_loop(
    source: Arc<dyn ReplicaSource>,
    dir: PathBuf,
    config: ReplicationConfig,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(config.high_watermark_checkpoint_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let s = source.clone();
        let d = dir.clone();
        let _ = tokio::task::spawn_blocking(move || write_checkpoint(&*s, &d)).await;
    }
    let _ = tokio::task::spawn_blocking(move || write_checkpoint(&*source, &dir)).await;
}
