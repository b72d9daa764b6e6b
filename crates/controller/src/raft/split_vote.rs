//! Breaking split votes with a fresh random wait per election.
//!
//! Standard Raft draws a new election timeout for every election, so two
//! candidates that split one term's votes are unlikely to collide again.
//! openraft 0.9 does not: it draws a node's election timeout once, when the
//! `Raft` starts, and checks it only on its tick, every 1.5 heartbeat
//! intervals (300 ms with the defaults). A candidate's next election is
//! therefore at the first tick past its fixed timeout, and with the default
//! range of 300–600 ms that is one of two instants after it stood. Nodes
//! whose ticks are aligned (in the simulation every node starts at time 0;
//! in production it is a matter of luck) and whose timeouts round to the
//! same tick stand together in every term: with one leader per term, they
//! vote for themselves each time and nobody wins, for as long as both run.
//! The simulation found this after healing, with a voter down:
//! `KRAFTWERK_SIM_SEED=584`.
//!
//! [`restart_split_elections`] restores Raft's rule beside openraft's timer:
//! when a node has been a candidate in one term for a wait drawn anew each
//! time from `[min/2, min)` of the election timeout, it stands again in the
//! next term. The wait is shorter than openraft's own, so candidates that
//! stood together stand again at different instants, and the first one
//! collects the votes of the others (a higher term and a log at least as
//! long is all a candidate's vote asks). A node that is a follower or leader
//! is never touched, so an established leader is not disturbed.

use std::time::Duration;

use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use super::MetadataRaft;

/// The range of the wait before a candidate stands again, from the
/// shortest election timeout: `[min/2, min)`, at least 1 ms wide.
pub fn restart_wait_range_ms(election_timeout_min_ms: u64) -> (u64, u64) {
    let low = (election_timeout_min_ms / 2).max(1);
    (low, election_timeout_min_ms.max(low + 1))
}

/// Runs until `cancel` or until the Raft stops: whenever this node has been
/// a candidate in one term for `draw_ms()` milliseconds (drawn for each
/// term it stands in), it starts an election in the next term.
///
/// `draw_ms` returns a value in [`restart_wait_range_ms`]; the simulation
/// passes its seeded generator, a controller node a random one.
pub async fn restart_split_elections<F>(
    raft: MetadataRaft,
    mut draw_ms: F,
    cancel: CancellationToken,
) where
    F: FnMut() -> u64 + Send,
{
    let mut metrics = raft.metrics();
    loop {
        let standing_in = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Candidate).then_some(m.current_term)
        };
        let Some(term) = standing_in else {
            // Biased: an unbiased select draws from a random source, which
            // the simulation's determinism does not allow.
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            continue;
        };
        let wait = Duration::from_millis(draw_ms());
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if metrics.has_changed().is_err() {
            return;
        }
        let still_standing = {
            let m = metrics.borrow_and_update();
            m.state == ServerState::Candidate && m.current_term == term
        };
        if !still_standing {
            continue;
        }
        tracing::debug!(
            term,
            waited_ms = wait.as_millis() as u64,
            "no leader elected in this term: standing again"
        );
        if let Err(e) = raft.trigger().elect().await {
            tracing::debug!("could not stand again: {e}");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_below_the_shortest_election_timeout() {
        assert_eq!(restart_wait_range_ms(300), (150, 300));
        assert_eq!(restart_wait_range_ms(1), (1, 2));
        assert_eq!(restart_wait_range_ms(0), (1, 2));
        let (low, high) = restart_wait_range_ms(1000);
        assert!(low < high && high <= 1000);
    }
}
