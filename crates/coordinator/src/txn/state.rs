//! A transactional id's state and its transitions, as pure functions: each
//! takes the current state and a request and returns the state to write
//! (or Kafka's error), so the coordinator only stores and answers.

use std::collections::BTreeSet;

use kraftwerk_types::ErrorCode;

/// Kafka's `TransactionState`, with its ids as stored in
/// `__transaction_state` and its names as DescribeTransactions gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Markers are being written: the transaction has an outcome but has
    /// not ended on every partition yet.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// What `__transaction_state` keeps of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the open (or ending) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction started, -1 when none is open.
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// What InitProducerId does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitStep {
    /// Store this and answer with its producer id and epoch.
    Write(TxnMetadata),
    /// A transaction is open: store this (an abort at a bumped epoch,
    /// which fences the producer that opened it), end it, and answer
    /// CONCURRENT_TRANSACTIONS so that the client asks again.
    AbortFirst(TxnMetadata),
    /// A new producer id is needed first.
    NeedsProducerId,
}

/// The last epoch before a producer id is exhausted and a new one is given.
const EPOCH_MAX: i16 = i16::MAX - 1;

/// InitProducerId with a transactional id. `given` is the producer id and
/// epoch the client presents (KIP-360), `fresh_id` a newly allocated id
/// when the caller has one.
pub fn init_producer_id(
    current: Option<&TxnMetadata>,
    timeout_ms: i32,
    given: Option<(i64, i16)>,
    fresh_id: Option<i64>,
    now_ms: i64,
) -> Result<InitStep, ErrorCode> {
    let fresh = |id: i64| TxnMetadata {
        producer_id: id,
        producer_epoch: 0,
        timeout_ms,
        state: TxnState::Empty,
        partitions: BTreeSet::new(),
        start_ms: -1,
        last_update_ms: now_ms,
    };
    let Some(m) = current else {
        return Ok(fresh_id.map_or(InitStep::NeedsProducerId, |id| InitStep::Write(fresh(id))));
    };
    if let Some((id, epoch)) = given {
        if id != m.producer_id || epoch != m.producer_epoch {
            return Err(ErrorCode::PRODUCER_FENCED);
        }
    }
    match m.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
            Err(ErrorCode::CONCURRENT_TRANSACTIONS)
        }
        TxnState::Ongoing => Ok(InitStep::AbortFirst(TxnMetadata {
            producer_epoch: m.producer_epoch.saturating_add(1),
            state: TxnState::PrepareAbort,
            last_update_ms: now_ms,
            ..m.clone()
        })),
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort | TxnState::Dead => {
            if m.producer_epoch >= EPOCH_MAX {
                return Ok(
                    fresh_id.map_or(InitStep::NeedsProducerId, |id| InitStep::Write(fresh(id)))
                );
            }
            Ok(InitStep::Write(TxnMetadata {
                producer_epoch: m.producer_epoch + 1,
                ..fresh(m.producer_id)
            }))
        }
    }
}

/// The producer id and epoch of a request must be the current ones.
pub fn check_producer(m: &TxnMetadata, producer_id: i64, epoch: i16) -> Result<(), ErrorCode> {
    if m.producer_id != producer_id {
        return Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING);
    }
    if m.producer_epoch != epoch {
        return Err(ErrorCode::PRODUCER_FENCED);
    }
    Ok(())
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, whose partition is the
/// group's offsets partition): `None` when every partition is already in
/// the open transaction (nothing to store).
pub fn add_partitions(
    current: Option<&TxnMetadata>,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Result<Option<TxnMetadata>, ErrorCode> {
    let m = current.ok_or(ErrorCode::INVALID_PRODUCER_ID_MAPPING)?;
    check_producer(m, producer_id, epoch)?;
    match m.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
            return Err(ErrorCode::CONCURRENT_TRANSACTIONS)
        }
        TxnState::Dead => return Err(ErrorCode::INVALID_TXN_STATE),
        TxnState::Ongoing if partitions.iter().all(|p| m.partitions.contains(p)) => {
            return Ok(None)
        }
        _ => {}
    }
    let mut next = m.clone();
    if m.state != TxnState::Ongoing {
        next.partitions.clear();
        next.start_ms = now_ms;
    }
    next.state = TxnState::Ongoing;
    next.partitions.extend(partitions.iter().cloned());
    next.last_update_ms = now_ms;
    Ok(Some(next))
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStep {
    /// A retry of an EndTxn that already completed: answer success.
    AlreadyDone,
    /// Store this prepared state, answer, then write the markers.
    Prepare(TxnMetadata),
}

pub fn end_txn(
    current: Option<&TxnMetadata>,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
) -> Result<EndStep, ErrorCode> {
    let m = current.ok_or(ErrorCode::INVALID_PRODUCER_ID_MAPPING)?;
    check_producer(m, producer_id, epoch)?;
    match (m.state, commit) {
        (TxnState::Ongoing, _) => Ok(EndStep::Prepare(TxnMetadata {
            state: if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            },
            last_update_ms: now_ms,
            ..m.clone()
        })),
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
            Ok(EndStep::AlreadyDone)
        }
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            Err(ErrorCode::CONCURRENT_TRANSACTIONS)
        }
        (TxnState::PrepareEpochFence, _) => Err(ErrorCode::CONCURRENT_TRANSACTIONS),
        _ => Err(ErrorCode::INVALID_TXN_STATE),
    }
}

/// The state once every marker of a prepared transaction is written.
pub fn complete(m: &TxnMetadata, now_ms: i64) -> TxnMetadata {
    TxnMetadata {
        state: match m.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            _ => TxnState::CompleteAbort,
        },
        partitions: BTreeSet::new(),
        last_update_ms: now_ms,
        ..m.clone()
    }
}

/// An open transaction past its timeout is aborted at a bumped epoch, so
/// that the producer that left it open is fenced.
pub fn timed_out(m: &TxnMetadata, now_ms: i64) -> Option<TxnMetadata> {
    let open = m.state == TxnState::Ongoing;
    if !open || m.start_ms < 0 || m.start_ms.saturating_add(m.timeout_ms as i64) > now_ms {
        return None;
    }
    Some(TxnMetadata {
        producer_epoch: m.producer_epoch.saturating_add(1),
        state: TxnState::PrepareAbort,
        last_update_ms: now_ms,
        ..m.clone()
    })
}

/// A transactional id idle past `transactional.id.expiration.ms` is
/// forgotten (its record gets a tombstone).
pub fn expired(m: &TxnMetadata, expiration_ms: i64, now_ms: i64) -> bool {
    matches!(
        m.state,
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
    ) && m.last_update_ms.saturating_add(expiration_ms) <= now_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(state: TxnState, epoch: i16) -> TxnMetadata {
        TxnMetadata {
            producer_id: 7,
            producer_epoch: epoch,
            timeout_ms: 1000,
            state,
            partitions: BTreeSet::from([("t".to_string(), 0)]),
            start_ms: 100,
            last_update_ms: 100,
        }
    }

    #[test]
    fn init_producer_id_follows_kafka() {
        use TxnState::*;
        type Want = Result<(&'static str, i16), ErrorCode>;
        let step_of = |r: Result<InitStep, ErrorCode>| -> Want {
            r.map(|s| match s {
                InitStep::Write(m) => ("write", m.producer_epoch),
                InitStep::AbortFirst(m) => ("abort first", m.producer_epoch),
                InitStep::NeedsProducerId => ("needs id", -1),
            })
        };
        type Case = (&'static str, Option<TxnMetadata>, Option<(i64, i16)>, Want);
        let cases: Vec<Case> = vec![
            ("new id", None, None, Ok(("needs id", -1))),
            (
                "complete: bump",
                Some(meta(CompleteCommit, 3)),
                None,
                Ok(("write", 4)),
            ),
            ("empty: bump", Some(meta(Empty, 0)), None, Ok(("write", 1))),
            (
                "open: abort first",
                Some(meta(Ongoing, 3)),
                None,
                Ok(("abort first", 4)),
            ),
            (
                "ending",
                Some(meta(PrepareCommit, 3)),
                None,
                Err(ErrorCode::CONCURRENT_TRANSACTIONS),
            ),
            (
                "KIP-360 current",
                Some(meta(CompleteAbort, 3)),
                Some((7, 3)),
                Ok(("write", 4)),
            ),
            (
                "KIP-360 stale epoch",
                Some(meta(CompleteAbort, 3)),
                Some((7, 2)),
                Err(ErrorCode::PRODUCER_FENCED),
            ),
            (
                "KIP-360 other id",
                Some(meta(CompleteAbort, 3)),
                Some((8, 3)),
                Err(ErrorCode::PRODUCER_FENCED),
            ),
            (
                "epoch exhausted",
                Some(meta(Empty, EPOCH_MAX)),
                None,
                Ok(("needs id", -1)),
            ),
        ];
        for (name, current, given, want) in cases {
            let got = step_of(init_producer_id(current.as_ref(), 5000, given, None, 200));
            assert_eq!(got, want, "{name}");
        }
        let fresh = init_producer_id(None, 5000, None, Some(42), 200);
        assert!(
            matches!(fresh, Ok(InitStep::Write(m)) if m.producer_id == 42 && m.producer_epoch == 0 && m.timeout_ms == 5000)
        );
    }

    #[test]
    fn a_transaction_runs_from_add_to_complete() {
        let empty = TxnMetadata {
            partitions: BTreeSet::new(),
            start_ms: -1,
            ..meta(TxnState::Empty, 1)
        };
        let p = |t: &str, n: i32| (t.to_string(), n);
        let open = add_partitions(Some(&empty), 7, 1, &[p("a", 0)], 500)
            .unwrap()
            .unwrap();
        assert_eq!((open.state, open.start_ms), (TxnState::Ongoing, 500));
        assert_eq!(
            add_partitions(Some(&open), 7, 1, &[p("a", 0)], 600),
            Ok(None)
        );
        let more = add_partitions(Some(&open), 7, 1, &[p("b", 1)], 600)
            .unwrap()
            .unwrap();
        assert_eq!(more.partitions.len(), 2);
        assert_eq!(more.start_ms, 500);
        assert_eq!(
            add_partitions(Some(&open), 7, 0, &[p("b", 1)], 600),
            Err(ErrorCode::PRODUCER_FENCED)
        );
        assert_eq!(
            add_partitions(Some(&open), 8, 1, &[p("b", 1)], 600),
            Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING)
        );
        assert_eq!(
            add_partitions(None, 7, 1, &[p("b", 1)], 600),
            Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING)
        );

        let Ok(EndStep::Prepare(prepared)) = end_txn(Some(&more), 7, 1, true, 700) else {
            panic!("commit of an open transaction must prepare it");
        };
        assert_eq!(prepared.state, TxnState::PrepareCommit);
        assert_eq!(
            add_partitions(Some(&prepared), 7, 1, &[p("c", 0)], 700),
            Err(ErrorCode::CONCURRENT_TRANSACTIONS)
        );
        assert_eq!(
            end_txn(Some(&prepared), 7, 1, true, 700),
            Err(ErrorCode::CONCURRENT_TRANSACTIONS)
        );
        assert_eq!(
            end_txn(Some(&prepared), 7, 1, false, 700),
            Err(ErrorCode::INVALID_TXN_STATE)
        );
        let done = complete(&prepared, 800);
        assert_eq!(done.state, TxnState::CompleteCommit);
        assert!(done.partitions.is_empty());
        assert_eq!(
            end_txn(Some(&done), 7, 1, true, 900),
            Ok(EndStep::AlreadyDone)
        );
        assert_eq!(
            end_txn(Some(&done), 7, 1, false, 900),
            Err(ErrorCode::INVALID_TXN_STATE)
        );
        assert_eq!(
            end_txn(Some(&empty), 7, 1, true, 900),
            Err(ErrorCode::INVALID_TXN_STATE)
        );
        assert_eq!(
            end_txn(Some(&done), 7, 0, true, 900),
            Err(ErrorCode::PRODUCER_FENCED)
        );
        // The next transaction starts afresh.
        let next = add_partitions(Some(&done), 7, 1, &[p("c", 0)], 1000)
            .unwrap()
            .unwrap();
        assert_eq!(next.partitions.len(), 1);
        assert_eq!(next.start_ms, 1000);
    }

    #[test]
    fn timeouts_abort_at_a_bumped_epoch_and_idle_ids_expire() {
        let open = meta(TxnState::Ongoing, 3);
        assert_eq!(timed_out(&open, 1099), None);
        let aborted = timed_out(&open, 1100).unwrap();
        assert_eq!(
            (aborted.state, aborted.producer_epoch),
            (TxnState::PrepareAbort, 4)
        );
        assert_eq!(timed_out(&meta(TxnState::PrepareCommit, 3), 5000), None);
        assert!(expired(&meta(TxnState::CompleteCommit, 3), 1000, 1100));
        assert!(!expired(&meta(TxnState::CompleteCommit, 3), 1000, 1099));
        assert!(!expired(&meta(TxnState::Ongoing, 3), 1000, 5000));
    }
}
