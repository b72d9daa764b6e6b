//! Producer state: per producer id, its epoch, its last five batches and
//! the first offset of its open transaction, rebuilt from batch headers
//! (and the type of transaction markers) and checked before every leader
//! append. Transactions ended by an ABORT marker are remembered as
//! [`AbortedTxn`]s for read_committed fetches.
//!
//! Pure bookkeeping, no I/O: the log feeds it headers (from the network on
//! the leader path, from disk on recovery and the follower path).

use std::collections::{HashMap, VecDeque};

use kraftwerk_protocol::batch::BatchHeader;

use crate::StorageError;

/// How many batches per producer are remembered for duplicate detection;
/// Kafka's `max.in.flight.requests.per.connection` for idempotence is 5.
pub(crate) const PRODUCER_BATCHES_MAX: usize = 5;

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    pub(crate) first_sequence: i32,
    pub(crate) last_sequence: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub(crate) producer_epoch: i16,
    pub(crate) batches: VecDeque<ProducerBatch>,
    /// The offset of the first batch of the transaction this producer has
    /// open in this partition.
    pub(crate) txn_first_offset: Option<i64>,
    /// The epoch of the coordinator that wrote this producer's last marker.
    pub(crate) coordinator_epoch: i32,
}

/// A transaction that ended with an ABORT marker: its data lies in
/// `[first_offset, last_offset)` and the marker sits at `last_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What a batch is, for producer state: data, or a transaction marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchKind {
    Data,
    /// A control batch; `commit` from its record's type (anything but
    /// COMMIT ends the transaction as aborted, as Kafka reads it).
    Marker {
        commit: bool,
        coordinator_epoch: i32,
    },
}

impl BatchKind {
    /// The kind of a control batch from what its record says.
    pub(crate) fn marker(record: Option<kraftwerk_protocol::batch::ControlRecord>) -> BatchKind {
        BatchKind::Marker {
            commit: record.is_some_and(|r| r.kind == kraftwerk_protocol::batch::CONTROL_COMMIT),
            coordinator_epoch: record.map_or(-1, |r| r.coordinator_epoch),
        }
    }
}

impl ProducerEntry {
    fn last_offset(&self) -> Option<i64> {
        self.batches.back().map(|b| b.last_offset)
    }
}

/// A producer's state as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The last sequence number in the log from this producer.
    pub last_sequence: i32,
    /// The max timestamp of its last batch.
    pub last_timestamp: i64,
    /// The first offset of its open transaction, -1 when none.
    pub current_txn_start_offset: i64,
    pub coordinator_epoch: i32,
}

/// The verdict on one batch from a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// New data: append it.
    Append,
    /// A retry of a batch already in the log: answer with its offsets.
    Duplicate(ProducerBatch),
}

#[derive(Debug, Default)]
pub(crate) struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
    /// By marker offset.
    aborted: Vec<AbortedTxn>,
}

/// The sequence after `sequence`, wrapping at `i32::MAX` like Kafka.
fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStateManager {
    pub(crate) fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Checks a leader-path batch against `entry` (the producer's state,
    /// including earlier batches of the same append).
    pub(crate) fn check(
        entry: Option<&ProducerEntry>,
        header: &BatchHeader,
    ) -> Result<SequenceCheck, StorageError> {
        let Some(entry) = entry else {
            // Unknown producer (new, or its state expired with retention).
            return Ok(SequenceCheck::Append);
        };
        let producer_id = header.producer_id;
        if header.producer_epoch < entry.producer_epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id,
                known_epoch: entry.producer_epoch,
                batch_epoch: header.producer_epoch,
            });
        }
        if header.base_sequence < 0 {
            // No sequence numbers: nothing to deduplicate.
            return Ok(SequenceCheck::Append);
        }
        if header.producer_epoch > entry.producer_epoch {
            if header.base_sequence != 0 {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id,
                    producer_epoch: header.producer_epoch,
                    expected_sequence: 0,
                    first_sequence: header.base_sequence,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        let (first, last) = (header.base_sequence, header.last_sequence());
        if let Some(original) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == first && b.last_sequence == last)
        {
            return Ok(SequenceCheck::Duplicate(*original));
        }
        match entry.batches.back() {
            Some(latest) if latest.last_sequence >= 0 => {
                let expected = next_sequence(latest.last_sequence);
                if first != expected {
                    return Err(StorageError::OutOfOrderSequence {
                        producer_id,
                        producer_epoch: header.producer_epoch,
                        expected_sequence: expected,
                        first_sequence: first,
                    });
                }
                Ok(SequenceCheck::Append)
            }
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Records a batch that is (or is about to be) in the log, with its
    /// final offsets. Used by every path, so no checks here. Returns the
    /// transaction an ABORT marker ended.
    pub(crate) fn apply(
        entry: &mut Option<ProducerEntry>,
        header: &BatchHeader,
        kind: BatchKind,
    ) -> Option<AbortedTxn> {
        if let BatchKind::Marker {
            commit,
            coordinator_epoch,
        } = kind
        {
            let existing = entry.get_or_insert_with(|| ProducerEntry {
                producer_epoch: header.producer_epoch,
                batches: VecDeque::new(),
                txn_first_offset: None,
                coordinator_epoch,
            });
            if header.producer_epoch > existing.producer_epoch {
                // A marker written after the coordinator bumped the epoch
                // (an abort on timeout): the producer starts over.
                existing.producer_epoch = header.producer_epoch;
                existing.batches.clear();
            }
            existing.coordinator_epoch = coordinator_epoch;
            let first = existing.txn_first_offset.take();
            return match (commit, first) {
                (false, Some(first_offset)) => Some(AbortedTxn {
                    producer_id: header.producer_id,
                    first_offset,
                    last_offset: header.base_offset,
                }),
                _ => None,
            };
        }
        let batch = ProducerBatch {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
        };
        match entry {
            Some(existing) if existing.producer_epoch == header.producer_epoch => {
                existing.batches.push_back(batch);
                while existing.batches.len() > PRODUCER_BATCHES_MAX {
                    existing.batches.pop_front();
                }
                if header.is_transactional() && existing.txn_first_offset.is_none() {
                    existing.txn_first_offset = Some(header.base_offset);
                }
            }
            Some(existing) if existing.producer_epoch > header.producer_epoch => {
                // Only the follower/recovery path gets here (the leader path
                // refused it); keep the newer epoch, as the log already did.
            }
            _ => {
                let coordinator_epoch = entry.as_ref().map_or(-1, |e| e.coordinator_epoch);
                *entry = Some(ProducerEntry {
                    producer_epoch: header.producer_epoch,
                    batches: VecDeque::from([batch]),
                    txn_first_offset: header.is_transactional().then_some(header.base_offset),
                    coordinator_epoch,
                });
            }
        }
        None
    }

    /// Keeps a transaction an ABORT marker ended, for read_committed fetches.
    pub(crate) fn record_aborted(&mut self, aborted: AbortedTxn) {
        self.aborted.push(aborted);
    }

    /// The first offset of the earliest open transaction: read_committed
    /// readers stop before it.
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .values()
            .filter_map(|e| e.txn_first_offset)
            .min()
    }

    /// Aborted transactions that overlap `[from, upper)`, as a
    /// read_committed fetch of that range needs them.
    pub(crate) fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < upper)
            .copied()
            .collect()
    }

    /// Applies one batch header directly to the state (recovery, follower).
    pub(crate) fn update(&mut self, header: &BatchHeader, kind: BatchKind) {
        if !header.has_producer_id() {
            return;
        }
        let mut entry = self.producers.remove(&header.producer_id);
        let aborted = Self::apply(&mut entry, header, kind);
        if let Some(entry) = entry {
            self.producers.insert(header.producer_id, entry);
        }
        if let Some(a) = aborted {
            self.aborted.push(a);
        }
    }

    pub(crate) fn commit(&mut self, staged: HashMap<i64, ProducerEntry>) {
        self.producers.extend(staged);
    }

    /// Forgets producers whose every remembered batch is below the log start
    /// offset, as Kafka does when retention removes their data.
    pub(crate) fn remove_before(&mut self, log_start_offset: i64) {
        self.producers.retain(|_, entry| {
            entry.txn_first_offset.is_some()
                || entry.last_offset().is_some_and(|o| o >= log_start_offset)
        });
        self.aborted.retain(|a| a.last_offset >= log_start_offset);
    }

    /// Every producer with a batch in the log, as DescribeProducers lists
    /// them, by producer id.
    pub(crate) fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .filter_map(|(id, entry)| {
                let last = entry.batches.back()?;
                Some(ActiveProducer {
                    producer_id: *id,
                    producer_epoch: entry.producer_epoch,
                    last_sequence: last.last_sequence,
                    last_timestamp: last.max_timestamp,
                    current_txn_start_offset: entry.txn_first_offset.unwrap_or(-1),
                    coordinator_epoch: entry.coordinator_epoch,
                })
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    pub(crate) fn clear(&mut self) {
        self.producers.clear();
        self.aborted.clear();
    }

    /// (producer id, last offset) of every remembered batch: compaction
    /// keeps these batches (emptied if need be) so that this state can be
    /// rebuilt from the log after a restart.
    pub(crate) fn remembered_batches(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.producers
            .iter()
            .flat_map(|(id, entry)| entry.batches.iter().map(move |b| (*id, b.last_offset)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(epoch: i16, first_sequence: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: 42,
            producer_epoch: epoch,
            base_sequence: first_sequence,
            record_count: records,
        }
    }

    #[derive(Debug)]
    enum Want {
        Append,
        Duplicate(i64),
        OutOfOrder,
        Fenced,
    }

    #[test]
    fn sequence_checks_follow_kafka() {
        // State: epoch 1, batches seq 0..=2 at offset 10, seq 3..=4 at offset 13.
        let mut state = ProducerStateManager::default();
        state.update(&header(1, 0, 3, 10), BatchKind::Data);
        state.update(&header(1, 3, 2, 13), BatchKind::Data);
        let cases = [
            ("next in order", header(1, 5, 1, 0), Want::Append),
            (
                "retry of the latest",
                header(1, 3, 2, 0),
                Want::Duplicate(13),
            ),
            (
                "retry of an older one",
                header(1, 0, 3, 0),
                Want::Duplicate(10),
            ),
            ("gap", header(1, 7, 1, 0), Want::OutOfOrder),
            ("older epoch", header(0, 5, 1, 0), Want::Fenced),
            ("new epoch from zero", header(2, 0, 1, 0), Want::Append),
            (
                "new epoch not from zero",
                header(2, 5, 1, 0),
                Want::OutOfOrder,
            ),
        ];
        for (name, batch, want) in cases {
            let got = ProducerStateManager::check(state.entry(42), &batch);
            let ok = match (&want, &got) {
                (Want::Append, Ok(SequenceCheck::Append)) => true,
                (Want::Duplicate(offset), Ok(SequenceCheck::Duplicate(b))) => {
                    b.base_offset == *offset
                }
                (Want::OutOfOrder, Err(StorageError::OutOfOrderSequence { .. })) => true,
                (Want::Fenced, Err(StorageError::InvalidProducerEpoch { .. })) => true,
                _ => false,
            };
            assert!(ok, "{name}: want {want:?}, got {got:?}");
        }
    }

    #[test]
    fn sequences_wrap_and_only_five_batches_are_remembered() {
        let mut state = ProducerStateManager::default();
        state.update(&header(0, i32::MAX - 1, 2, 0), BatchKind::Data);
        assert_eq!(
            ProducerStateManager::check(state.entry(42), &header(0, 0, 1, 0)).ok(),
            Some(SequenceCheck::Append)
        );
        for n in 0..6 {
            state.update(&header(0, n, 1, 10 + n as i64), BatchKind::Data);
        }
        let entry = state.entry(42).expect("entry");
        assert_eq!(entry.batches.len(), PRODUCER_BATCHES_MAX);
        assert_eq!(entry.batches.front().map(|b| b.first_sequence), Some(1));
        state.remove_before(100);
        assert!(state.entry(42).is_none());
    }

    fn txn(producer_id: i64, epoch: i16, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            producer_id,
            attributes: kraftwerk_protocol::batch::ATTR_TRANSACTIONAL,
            ..header(epoch, 0, records, base_offset)
        }
    }

    fn marker(producer_id: i64, epoch: i16, offset: i64) -> BatchHeader {
        BatchHeader {
            producer_id,
            attributes: kraftwerk_protocol::batch::ATTR_TRANSACTIONAL
                | kraftwerk_protocol::batch::ATTR_CONTROL,
            base_sequence: -1,
            ..header(epoch, 0, 1, offset)
        }
    }

    #[test]
    fn open_transactions_hold_the_stable_offset_and_aborts_are_kept() {
        let mut state = ProducerStateManager::default();
        let commit = BatchKind::Marker {
            commit: true,
            coordinator_epoch: 0,
        };
        let abort = BatchKind::Marker {
            commit: false,
            coordinator_epoch: 0,
        };
        state.update(&txn(1, 0, 2, 10), BatchKind::Data); // 10..=11
        state.update(&txn(2, 0, 2, 12), BatchKind::Data); // 12..=13
        state.update(&txn(1, 0, 1, 14), BatchKind::Data); // same transaction
        assert_eq!(state.first_unstable_offset(), Some(10));
        state.update(&marker(1, 0, 15), commit);
        assert_eq!(state.first_unstable_offset(), Some(12));
        assert!(state.aborted_between(0, 100).is_empty());
        state.update(&marker(2, 0, 16), abort);
        assert_eq!(state.first_unstable_offset(), None);
        let want = AbortedTxn {
            producer_id: 2,
            first_offset: 12,
            last_offset: 16,
        };
        assert_eq!(state.aborted_between(0, 100), vec![want]);
        assert_eq!(state.aborted_between(16, 100), vec![want]);
        assert!(state.aborted_between(17, 100).is_empty());
        assert!(state.aborted_between(0, 12).is_empty());
        // A marker at a bumped epoch (abort on timeout) moves the producer on.
        state.update(&txn(1, 0, 1, 17), BatchKind::Data);
        state.update(&marker(1, 1, 18), abort);
        assert_eq!(state.entry(1).map(|e| e.producer_epoch), Some(1));
        assert_eq!(state.aborted_between(0, 100).len(), 2);
        state.remove_before(17);
        assert_eq!(state.aborted_between(0, 100).len(), 1);
    }
}
