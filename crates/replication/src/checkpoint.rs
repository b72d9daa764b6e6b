//! `replication-offset-checkpoint`: the high watermark of every partition
//! in a log directory, in Kafka's format (version line, count line, then
//! `topic partition offset` lines). A restarted leader starts from it, so
//! it does not expose records that were never committed; a stale value only
//! delays visibility until the followers report again.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use kraftwerk_types::TopicPartition;

pub const FILE_NAME: &str = "replication-offset-checkpoint";
const VERSION: u32 = 0;
/// A checkpoint with more lines than this is not believed.
const ENTRIES_MAX: usize = 1_000_000;

/// Reads the checkpoint; a missing or malformed file reads as empty.
pub fn read(dir: &Path) -> HashMap<TopicPartition, i64> {
    let path = dir.join(FILE_NAME);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return HashMap::new();
    };
    match parse(&text) {
        Some(map) => map,
        None => {
            tracing::warn!(path = %path.display(), "malformed high-watermark checkpoint ignored");
            HashMap::new()
        }
    }
}

fn parse(text: &str) -> Option<HashMap<TopicPartition, i64>> {
    let mut lines = text.lines();
    if lines.next()?.trim().parse::<u32>().ok()? != VERSION {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    if count > ENTRIES_MAX {
        return None;
    }
    let mut map = HashMap::with_capacity(count);
    for line in lines.take(count) {
        let mut parts = line.rsplitn(3, ' ');
        let offset: i64 = parts.next()?.parse().ok()?;
        let partition: i32 = parts.next()?.parse().ok()?;
        let topic = parts.next()?;
        map.insert(TopicPartition::new(topic, partition), offset);
    }
    (map.len() == count).then_some(map)
}

/// Writes the checkpoint atomically: temporary file, fsync, rename, fsync dir.
pub fn write(dir: &Path, entries: &[(TopicPartition, i64)]) -> std::io::Result<()> {
    let mut text = format!("{VERSION}\n{}\n", entries.len());
    for (tp, hw) in entries {
        text.push_str(&format!("{} {} {hw}\n", tp.topic, tp.partition));
    }
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(FILE_NAME))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_malformed() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read(dir.path()).is_empty());
        let entries = vec![
            (TopicPartition::new("a", 0), 10),
            (TopicPartition::new("b-c", 3), 0),
        ];
        write(dir.path(), &entries).expect("write");
        let back = read(dir.path());
        assert_eq!(back.len(), 2);
        assert_eq!(back[&TopicPartition::new("a", 0)], 10);
        assert_eq!(back[&TopicPartition::new("b-c", 3)], 0);
        for bad in ["", "1\n0\n", "0\n2\na 0 1\n", "0\n1\na x 1\n"] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
