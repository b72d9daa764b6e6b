//! The coordinators' view of internal topics ([`CoordinatorLog`]),
//! implemented over this broker's metadata image and partitions.

use bytes::Bytes;
use kraftwerk_coordinator::{CoordinatorLog, LogFuture};
use kraftwerk_types::ErrorCode;
use tokio::time::Instant;

use crate::partition::Acks;
use crate::BrokerState;

impl CoordinatorLog for BrokerState {
    fn partition_count(&self, topic: &str) -> Option<i32> {
        self.image
            .load()
            .topic(topic)
            .map(|t| t.partitions.len() as i32)
    }

    fn led_epoch(&self, topic: &str, partition: i32) -> Option<i32> {
        self.image
            .load()
            .partition(topic, partition)
            .filter(|p| p.leader == self.config.node_id)
            .map(|p| p.leader_epoch)
    }

    fn led_partitions(&self, topic: &str) -> Vec<(i32, i32)> {
        let image = self.image.load();
        let Some(t) = image.topic(topic) else {
            return Vec::new();
        };
        t.partitions
            .iter()
            .filter(|p| p.leader == self.config.node_id)
            .map(|p| (p.partition, p.leader_epoch))
            .collect()
    }

    fn append(&self, topic: &str, partition: i32, batch: Bytes) -> Result<i64, ErrorCode> {
        if self.led_epoch(topic, partition).is_none() {
            return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER);
        }
        let Some(p) = self.replicas.get(topic, partition) else {
            return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER);
        };
        let checked = p.check_append(&batch, Acks::Leader).map_err(|refused| {
            if refused.code != ErrorCode::NOT_LEADER_OR_FOLLOWER {
                // A bug of the coordinator's encoder, not bad input.
                tracing::error!(topic, partition, error = %refused.message, "a coordinator batch was refused");
            }
            refused.code
        })?;
        let appended = p.append_here(checked).map_err(|refused| {
            tracing::error!(topic, partition, error = %refused.message, "coordinator append failed");
            refused.code
        })?;
        Ok(appended.last_offset)
    }

    fn wait_committed<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        offset: i64,
        deadline: Instant,
    ) -> LogFuture<'a, Result<(), ErrorCode>> {
        Box::pin(async move {
            let Some(p) = self.replicas.get(topic, partition) else {
                return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER);
            };
            // The coordinators do not carry the epoch of their appends
            // through `CoordinatorLog`; the epoch the partition is led in
            // now is the closest (see docs/reliability.md, "Deterministic
            // simulation").
            p.wait_committed(offset, p.leader_epoch(), deadline).await
        })
    }

    fn offsets(&self, topic: &str, partition: i32) -> Option<(i64, i64)> {
        self.replicas
            .get(topic, partition)
            .map(|p| (p.log.log_start_offset(), p.log.log_end_offset()))
    }

    fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        max_bytes: usize,
        end: i64,
    ) -> Result<Bytes, String> {
        let Some(p) = self.replicas.get(topic, partition) else {
            return Err(format!("{topic}-{partition} is not on this broker"));
        };
        p.log
            .read(from, max_bytes, end, true)
            .map_err(|e| e.to_string())
    }
}
