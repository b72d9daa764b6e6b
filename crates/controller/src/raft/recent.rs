//! The metadata commands applied most recently, kept so that a broker a
//! few changes behind receives those changes (`FetchMetadata` deltas)
//! rather than the whole image, whose size grows with the partition count.

use std::collections::VecDeque;
use std::sync::Arc;

use kraftwerk_metadata::commands::MetadataCommand;
use parking_lot::Mutex;

/// How many commands are kept; a broker further behind gets the image.
pub const KEPT_COMMANDS: usize = 4096;

/// Commands in log order since `floor`: every command with an index above
/// `floor` that was applied is kept (up to [`KEPT_COMMANDS`]).
#[derive(Debug, Default)]
pub struct RecentCommands {
    inner: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    floor: u64,
    entries: VecDeque<(u64, Arc<MetadataCommand>)>,
}

impl RecentCommands {
    /// Nothing is known before `floor` (a snapshot's last index, or 0).
    pub fn reset(&self, floor: u64) {
        let mut r = self.inner.lock();
        r.floor = floor;
        r.entries.clear();
    }

    /// A command applied at `index` (indexes only grow).
    pub fn push(&self, index: u64, command: Arc<MetadataCommand>) {
        let mut r = self.inner.lock();
        if r.entries.back().is_some_and(|(last, _)| *last >= index) || index <= r.floor {
            // A replay of what is kept already (the state machine applies
            // the log again after a restart): start over from here.
            r.floor = index.saturating_sub(1);
            r.entries.clear();
        }
        r.entries.push_back((index, command));
        while r.entries.len() > KEPT_COMMANDS {
            if let Some((evicted, _)) = r.entries.pop_front() {
                r.floor = evicted;
            }
        }
    }

    /// The commands with an index in `(since, until]`, when every command
    /// of that range is still kept; `None` when some are gone.
    pub fn between(&self, since: u64, until: u64) -> Option<Vec<(u64, Arc<MetadataCommand>)>> {
        let r = self.inner.lock();
        if since < r.floor {
            return None;
        }
        Some(
            r.entries
                .iter()
                .filter(|(i, _)| *i > since && *i <= until)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(id: i32) -> Arc<MetadataCommand> {
        Arc::new(MetadataCommand::FenceBroker { broker_id: id })
    }

    #[test]
    fn a_range_is_answered_only_while_every_command_in_it_is_kept() {
        let recent = RecentCommands::default();
        recent.reset(10);
        recent.push(12, cmd(1));
        recent.push(15, cmd(2));
        assert_eq!(recent.between(9, 15), None);
        let got = recent.between(10, 15).unwrap();
        assert_eq!(
            got.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![12, 15]
        );
        assert_eq!(recent.between(12, 14).unwrap().len(), 0);
        assert_eq!(recent.between(12, 15).unwrap().len(), 1);
        for i in 0..KEPT_COMMANDS as u64 {
            recent.push(100 + i, cmd(3));
        }
        // 12 and 15 were evicted: the floor is 15 now.
        assert_eq!(recent.between(14, 200), None);
        assert!(recent.between(15, 200).is_some());
    }

    #[test]
    fn a_replayed_index_starts_the_range_over() {
        let recent = RecentCommands::default();
        recent.push(1, cmd(1));
        recent.push(2, cmd(1));
        recent.push(2, cmd(2));
        assert_eq!(recent.between(0, 2), None);
        assert_eq!(recent.between(1, 2).unwrap().len(), 1);
    }
}
