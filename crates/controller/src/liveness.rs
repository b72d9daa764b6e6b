//! Broker liveness as the active controller judges it: a pure state
//! machine (the clock is passed in, nothing here does I/O), driven by
//! `service` with heartbeats, broker sessions and probe results, and
//! answering which brokers to probe and which to fence.
//!
//! Two ways a broker is found dead:
//!
//! - **Session timeout** (Kafka's rule): no heartbeat for
//!   `broker.session.timeout.ms`. Covers every failure, including a paused
//!   process or a network cut, at the price of the whole timeout.
//! - **Broken session, confirmed by a probe** (the fast path): each broker
//!   keeps a session stream open with the active controller
//!   (`BrokerSession`). The kernel closes a killed process's connections at
//!   once, so the stream ends within milliseconds of a `kill -9` or a crash.
//!   An ended stream alone is no proof (a connection can break while both
//!   ends live), so the broker becomes a *suspect*, and the controller
//!   connects to its replication endpoint: a refused connection (nothing
//!   listens on the port: the process is gone) or an unreachable host is
//!   proof, and the broker is fenced at once. A connection that is
//!   accepted, or a probe without an answer, proves nothing: a paused or
//!   cut-off broker is left to the session timeout. A suspect is probed at
//!   once, again after [`PROBE_RETRY_FIRST`] (the connections of a dying
//!   process may close just before its listening socket does), then with
//!   doubling pauses up to [`PROBE_INTERVAL`], for at most one session
//!   timeout, until its session is back, it is fenced, or it registers
//!   again.
//!
//! A newly elected controller knows no sessions: every unfenced broker
//! starts as a suspect, so a broker that died with the old controller (the
//! same process, in combined mode) is fenced right after the election,
//! while live brokers, whose ports answer, are never fenced for the
//! election. Heartbeat clocks start at the moment the new controller last
//! heard from the old one (`credit` before the election, capped at a
//! quarter of a session): a broker paused together with the old controller is then
//! fenced one session after its last heartbeat, not one session after the
//! election. A voter stands for election only after hearing nothing from
//! the old leader for openraft's leader lease plus its election timeout, so
//! the measured silence is at least that long.
//!
//! A liveness task that could not run for a while (the process was paused
//! or starved) does not judge brokers by the clock it missed: every broker
//! gets a new session ([`Liveness::restart_sessions`]), so a controller
//! that resumes does not fence brokers whose heartbeats are still queued.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The pause before a suspect's second probe; it doubles up to [`PROBE_INTERVAL`].
pub const PROBE_RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest pause between two probes of a suspect.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// Open sessions one broker may hold; a live broker holds one, two while
/// it replaces a broken one.
pub const SESSIONS_PER_BROKER_MAX: usize = 4;

/// What a probe of a broker's endpoint found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Connection refused, or the host or network is unreachable: no
    /// process of the broker listens there any more.
    Gone,
    /// The connection was accepted: something listens (maybe paused).
    Listening,
    /// No answer in time, or the address did not resolve: proves nothing.
    Unknown,
}

/// A broker as the current image shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerState {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub fenced: bool,
}

#[derive(Debug, Clone, Copy)]
struct Sessions {
    broker_epoch: i64,
    open: usize,
}

#[derive(Debug, Clone, Copy)]
struct Suspect {
    broker_epoch: i64,
    since: Instant,
    next_probe: Instant,
    probing: bool,
    /// The pause after the next probe that proves nothing.
    retry: Duration,
}

/// The active controller's view of broker liveness.
#[derive(Debug)]
pub struct Liveness {
    session_timeout: Duration,
    last_heartbeat: HashMap<i32, Instant>,
    /// Open session streams per broker, for its latest epoch seen.
    sessions: HashMap<i32, Sessions>,
    suspects: HashMap<i32, Suspect>,
}

impl Liveness {
    pub fn new(session_timeout: Duration) -> Liveness {
        Liveness {
            session_timeout,
            last_heartbeat: HashMap::new(),
            sessions: HashMap::new(),
            suspects: HashMap::new(),
        }
    }

    /// This node just became the active controller. Every broker's session
    /// clock starts `credit` ago (at most a quarter of a session, so that
    /// live brokers keep most of one to find the new controller; see the
    /// module notes), and every unfenced broker without an open session
    /// here is a suspect.
    pub fn became_leader(&mut self, now: Instant, brokers: &[BrokerState], credit: Duration) {
        let credit = credit.min(self.session_timeout / 4);
        let start = now.checked_sub(credit).unwrap_or(now);
        self.last_heartbeat.clear();
        self.suspects.clear();
        for b in brokers {
            self.last_heartbeat.insert(b.broker_id, start);
            if !b.fenced && !self.has_session(b.broker_id, b.broker_epoch) {
                self.suspect(b.broker_id, b.broker_epoch, now);
            }
        }
    }

    /// Every broker's session starts again at `now`.
    pub fn restart_sessions(&mut self, now: Instant) {
        for t in self.last_heartbeat.values_mut() {
            *t = now;
        }
    }

    pub fn heartbeat(&mut self, broker_id: i32, now: Instant) {
        self.last_heartbeat.insert(broker_id, now);
    }

    /// A session stream of `broker_epoch` opens. Returns false, and
    /// counts nothing, when the broker holds [`SESSIONS_PER_BROKER_MAX`]
    /// already.
    pub fn session_opened(&mut self, broker_id: i32, broker_epoch: i64) -> bool {
        let entry = self.sessions.entry(broker_id).or_insert(Sessions {
            broker_epoch,
            open: 0,
        });
        if entry.broker_epoch < broker_epoch {
            *entry = Sessions {
                broker_epoch,
                open: 0,
            };
        }
        if entry.broker_epoch == broker_epoch {
            if entry.open >= SESSIONS_PER_BROKER_MAX {
                return false;
            }
            entry.open += 1;
        }
        if self
            .suspects
            .get(&broker_id)
            .is_some_and(|s| s.broker_epoch <= broker_epoch)
        {
            self.suspects.remove(&broker_id);
        }
        true
    }

    /// A session stream of `broker_epoch` ended; when it was the broker's
    /// last one, the broker is a suspect.
    pub fn session_closed(&mut self, broker_id: i32, broker_epoch: i64, now: Instant) {
        let Some(entry) = self.sessions.get_mut(&broker_id) else {
            return;
        };
        if entry.broker_epoch != broker_epoch {
            return; // a stream of an earlier registration
        }
        entry.open = entry.open.saturating_sub(1);
        if entry.open == 0 {
            self.sessions.remove(&broker_id);
            self.suspect(broker_id, broker_epoch, now);
        }
    }

    fn has_session(&self, broker_id: i32, broker_epoch: i64) -> bool {
        self.sessions
            .get(&broker_id)
            .is_some_and(|s| s.broker_epoch == broker_epoch && s.open > 0)
    }

    fn suspect(&mut self, broker_id: i32, broker_epoch: i64, now: Instant) {
        self.suspects.insert(
            broker_id,
            Suspect {
                broker_epoch,
                since: now,
                next_probe: now,
                probing: false,
                retry: PROBE_RETRY_FIRST,
            },
        );
    }

    /// Whether `broker_id` is suspected (for tests and diagnostics).
    pub fn is_suspect(&self, broker_id: i32) -> bool {
        self.suspects.contains_key(&broker_id)
    }

    /// Drops suspects that no longer need a probe (fenced, registered
    /// again, gone from the image, or suspected for a whole session) and
    /// returns the brokers to probe now; each is marked as being probed
    /// until [`Liveness::probe_finished`].
    pub fn due_probes(&mut self, now: Instant, brokers: &[BrokerState]) -> Vec<(i32, i64)> {
        let session = self.session_timeout;
        self.suspects.retain(|id, s| {
            brokers
                .iter()
                .any(|b| b.broker_id == *id && b.broker_epoch == s.broker_epoch && !b.fenced)
                && now.saturating_duration_since(s.since) <= session
        });
        let mut due = Vec::new();
        for (id, s) in &mut self.suspects {
            if !s.probing && now >= s.next_probe {
                s.probing = true;
                due.push((*id, s.broker_epoch));
            }
        }
        due.sort_unstable();
        due
    }

    /// When the next probe falls due, if one is waiting.
    pub fn next_probe_due(&self) -> Option<Instant> {
        self.suspects
            .values()
            .filter(|s| !s.probing)
            .map(|s| s.next_probe)
            .min()
    }

    /// A probe of `broker_id` (at `broker_epoch`) ended. Returns whether to
    /// fence the broker now.
    pub fn probe_finished(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
        outcome: ProbeOutcome,
        now: Instant,
    ) -> bool {
        let Some(s) = self.suspects.get_mut(&broker_id) else {
            return false;
        };
        if s.broker_epoch != broker_epoch {
            return false;
        }
        s.probing = false;
        s.next_probe = now + s.retry;
        s.retry = (s.retry * 2).min(PROBE_INTERVAL);
        if outcome == ProbeOutcome::Gone {
            self.suspects.remove(&broker_id);
            return true;
        }
        false
    }

    /// Unfenced brokers whose last heartbeat is older than the session
    /// timeout (or that never heartbeated here).
    pub fn expired(&self, now: Instant, brokers: &[BrokerState]) -> Vec<i32> {
        brokers
            .iter()
            .filter(|b| !b.fenced)
            .filter(|b| {
                self.last_heartbeat
                    .get(&b.broker_id)
                    .is_none_or(|t| now.saturating_duration_since(*t) > self.session_timeout)
            })
            .map(|b| b.broker_id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_secs(9);

    fn live(id: i32, epoch: i64) -> BrokerState {
        BrokerState {
            broker_id: id,
            broker_epoch: epoch,
            fenced: false,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_broken_session_is_probed_and_a_refused_probe_fences() {
        let t0 = Instant::now();
        let brokers = [live(1, 10), live(2, 20)];
        let mut l = Liveness::new(SESSION);
        l.became_leader(t0, &brokers, Duration::ZERO);
        l.session_opened(1, 10);
        l.session_opened(2, 20);
        assert!(l.due_probes(t0, &brokers).is_empty());
        assert_eq!(l.next_probe_due(), None);
        l.session_closed(2, 20, t0 + ms(100));
        assert_eq!(l.next_probe_due(), Some(t0 + ms(100)));
        assert_eq!(l.due_probes(t0 + ms(100), &brokers), vec![(2, 20)]);
        // One probe at a time.
        assert!(l.due_probes(t0 + ms(110), &brokers).is_empty());
        assert_eq!(l.next_probe_due(), None);
        assert!(!l.probe_finished(2, 20, ProbeOutcome::Listening, t0 + ms(101)));
        assert_eq!(l.next_probe_due(), Some(t0 + ms(151)));
        assert_eq!(l.due_probes(t0 + ms(151), &brokers), vec![(2, 20)]);
        assert!(l.probe_finished(2, 20, ProbeOutcome::Gone, t0 + ms(152)));
        assert!(!l.is_suspect(2));
    }

    #[test]
    fn a_listening_or_silent_broker_is_not_fenced_by_probes() {
        let t0 = Instant::now();
        let brokers = [live(1, 10)];
        for outcome in [ProbeOutcome::Listening, ProbeOutcome::Unknown] {
            let mut l = Liveness::new(SESSION);
            l.became_leader(t0, &brokers, Duration::ZERO);
            l.session_opened(1, 10);
            l.session_closed(1, 10, t0);
            let mut now = t0;
            let mut probed_at = Vec::new();
            while now <= t0 + SESSION + ms(1000) {
                for (id, epoch) in l.due_probes(now, &brokers) {
                    probed_at.push(now.duration_since(t0).as_millis());
                    assert!(!l.probe_finished(id, epoch, outcome, now), "{outcome:?}");
                }
                now += ms(10);
            }
            // At once, after 50 ms, then doubling pauses up to 250 ms, for one session.
            assert_eq!(probed_at[..6], [0, 50, 150, 350, 600, 850], "{outcome:?}");
            assert!(probed_at.windows(2).all(|w| w[1] - w[0] <= 250));
            assert_eq!(probed_at.last().copied(), Some(8850), "{outcome:?}");
            assert!(!l.is_suspect(1));
        }
    }

    #[test]
    fn a_session_back_in_time_ends_the_suspicion() {
        let t0 = Instant::now();
        let brokers = [live(1, 10)];
        let mut l = Liveness::new(SESSION);
        l.became_leader(t0, &brokers, Duration::ZERO);
        l.session_opened(1, 10);
        // A second stream (the broker reconnected before the first ended).
        l.session_opened(1, 10);
        l.session_closed(1, 10, t0);
        assert!(!l.is_suspect(1));
        l.session_closed(1, 10, t0);
        assert!(l.is_suspect(1));
        let due = l.due_probes(t0, &brokers);
        l.session_opened(1, 10);
        // A probe answer after the session came back changes nothing.
        for (id, epoch) in due {
            assert!(!l.probe_finished(id, epoch, ProbeOutcome::Gone, t0));
        }
    }

    #[test]
    fn streams_of_an_earlier_registration_do_not_count() {
        let t0 = Instant::now();
        let mut l = Liveness::new(SESSION);
        l.became_leader(t0, &[live(1, 10)], Duration::ZERO);
        l.session_opened(1, 10);
        // The broker restarted: its new session opens before the old one is seen to end.
        l.session_opened(1, 30);
        l.session_closed(1, 10, t0);
        assert!(!l.is_suspect(1));
        // A late open of the old registration is ignored too.
        assert!(l.session_opened(1, 10));
        l.session_closed(1, 30, t0);
        assert!(l.is_suspect(1));
        // Registered again (epoch 40): the suspicion of epoch 30 is dropped.
        assert!(l.due_probes(t0, &[live(1, 40)]).is_empty());
        assert!(!l.is_suspect(1));
    }

    #[test]
    fn a_broker_holds_a_bounded_number_of_sessions() {
        let t0 = Instant::now();
        let mut l = Liveness::new(SESSION);
        l.became_leader(t0, &[live(1, 10)], Duration::ZERO);
        for _ in 0..SESSIONS_PER_BROKER_MAX {
            assert!(l.session_opened(1, 10));
        }
        assert!(!l.session_opened(1, 10));
        l.session_closed(1, 10, t0);
        assert!(l.session_opened(1, 10));
        // A new registration starts counting afresh.
        assert!(l.session_opened(1, 11));
    }

    #[test]
    fn fenced_or_reregistered_suspects_are_not_probed() {
        let t0 = Instant::now();
        let mut l = Liveness::new(SESSION);
        let fenced = BrokerState {
            fenced: true,
            ..live(1, 10)
        };
        l.became_leader(t0, &[live(1, 10), live(2, 20)], Duration::ZERO);
        assert_eq!(l.due_probes(t0, &[fenced, live(2, 21)]), Vec::new());
        assert!(!l.is_suspect(1) && !l.is_suspect(2));
    }

    #[test]
    fn a_new_controller_suspects_every_unfenced_broker_without_a_session() {
        let t0 = Instant::now();
        let brokers = [
            live(1, 10),
            live(2, 20),
            BrokerState {
                fenced: true,
                ..live(3, 30)
            },
        ];
        let mut l = Liveness::new(SESSION);
        // A session opened just before the liveness task saw the election.
        l.session_opened(2, 20);
        l.became_leader(t0, &brokers, ms(900));
        assert_eq!(l.due_probes(t0, &brokers), vec![(1, 10)]);
        assert!(l.probe_finished(1, 10, ProbeOutcome::Gone, t0));
    }

    #[test]
    fn sessions_expire_one_timeout_after_the_last_heartbeat() {
        let t0 = Instant::now();
        let brokers = [live(1, 10), live(2, 20)];
        let mut l = Liveness::new(SESSION);
        // A new controller counts from `credit` before its election.
        l.became_leader(t0, &brokers, ms(900));
        assert!(l.expired(t0 + SESSION - ms(900), &brokers).is_empty());
        l.heartbeat(2, t0 + ms(500));
        assert_eq!(l.expired(t0 + SESSION - ms(899), &brokers), vec![1]);
        assert_eq!(l.expired(t0 + SESSION + ms(501), &brokers), vec![1, 2]);
        // The credit never exceeds a quarter of a session.
        let mut l = Liveness::new(ms(1000));
        l.became_leader(t0, &brokers, ms(900));
        assert!(l.expired(t0 + ms(749), &brokers).is_empty());
        assert_eq!(l.expired(t0 + ms(751), &brokers), vec![1, 2]);
        // A broker registered elsewhere and never heard of is expired.
        assert_eq!(l.expired(t0, &[live(7, 70)]), vec![7]);
    }

    #[test]
    fn a_stalled_controller_gives_every_broker_a_new_session() {
        let t0 = Instant::now();
        let brokers = [live(1, 10), live(2, 20)];
        let mut l = Liveness::new(SESSION);
        l.became_leader(t0, &brokers, Duration::ZERO);
        l.heartbeat(1, t0 + ms(1000));
        let resumed = t0 + SESSION + ms(5000);
        assert_eq!(l.expired(resumed, &brokers), vec![1, 2]);
        l.restart_sessions(resumed);
        assert!(l.expired(resumed + SESSION, &brokers).is_empty());
        assert_eq!(l.expired(resumed + SESSION + ms(1), &brokers), vec![1, 2]);
    }
}
