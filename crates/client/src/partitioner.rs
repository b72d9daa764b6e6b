//! Choosing a partition: Java's murmur2 for keyed records, sticky
//! partitioning (KIP-480) for unkeyed ones.

use std::collections::HashMap;

use rand::Rng;

/// Kafka's `Utils.murmur2`, bit for bit: seed `0x9747b28c`, 4-byte little
/// endian blocks, Java's signed 32-bit arithmetic.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition Java's default partitioner picks for a key.
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    debug_assert!(num_partitions > 0);
    to_positive(murmur2(key)) % num_partitions.max(1)
}

/// Sticky partitioning for unkeyed records: every topic keeps one current
/// partition until a batch for it is closed, then moves to another.
#[derive(Debug, Default)]
pub struct StickyPartitioner {
    current: HashMap<String, i32>,
}

impl StickyPartitioner {
    /// The current sticky partition of `topic`, choosing one if needed.
    /// `available` are partitions with a leader; when empty, any of
    /// `0..num_partitions` is used.
    pub fn partition(&mut self, topic: &str, num_partitions: i32, available: &[i32]) -> i32 {
        if let Some(&current) = self.current.get(topic) {
            if current < num_partitions && (available.is_empty() || available.contains(&current)) {
                return current;
            }
        }
        let chosen = choose_other(None, num_partitions, available);
        self.current.insert(topic.to_string(), chosen);
        chosen
    }

    /// The current sticky partition of `topic`, if one was chosen.
    pub fn current(&self, topic: &str) -> Option<i32> {
        self.current.get(topic).copied()
    }

    /// A batch for `partition` was closed (full or sent): if it was the
    /// sticky one, move to a different partition.
    pub fn on_batch_closed(
        &mut self,
        topic: &str,
        partition: i32,
        num_partitions: i32,
        available: &[i32],
    ) {
        if self.current.get(topic) == Some(&partition) {
            let chosen = choose_other(Some(partition), num_partitions, available);
            self.current.insert(topic.to_string(), chosen);
        }
    }
}

fn choose_other(previous: Option<i32>, num_partitions: i32, available: &[i32]) -> i32 {
    let mut rng = rand::rng();
    let candidates: Vec<i32> = if available.is_empty() {
        (0..num_partitions.max(1)).collect()
    } else {
        available.to_vec()
    };
    if candidates.len() == 1 {
        return candidates[0];
    }
    let others: Vec<i32> = candidates
        .iter()
        .copied()
        .filter(|p| Some(*p) != previous)
        .collect();
    let pool = if others.is_empty() {
        &candidates
    } else {
        &others
    };
    pool[rng.random_range(0..pool.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn keyed_partition_is_positive_modulo() {
        for n in 1..20 {
            let p = partition_for_key(b"foobar", n);
            assert!((0..n).contains(&p));
            assert_eq!(p, (-790332482i32 & 0x7fff_ffff) % n);
        }
    }

    #[test]
    fn sticky_partition_stays_until_batch_closes() {
        let mut sticky = StickyPartitioner::default();
        let first = sticky.partition("t", 4, &[0, 1, 2, 3]);
        for _ in 0..100 {
            assert_eq!(sticky.partition("t", 4, &[0, 1, 2, 3]), first);
        }
        // Closing a batch of another partition changes nothing.
        sticky.on_batch_closed("t", (first + 1) % 4, 4, &[0, 1, 2, 3]);
        assert_eq!(sticky.partition("t", 4, &[0, 1, 2, 3]), first);
        sticky.on_batch_closed("t", first, 4, &[0, 1, 2, 3]);
        let second = sticky.partition("t", 4, &[0, 1, 2, 3]);
        assert_ne!(second, first);
        // Unavailable partitions are avoided.
        let mut sticky = StickyPartitioner::default();
        for _ in 0..50 {
            assert_eq!(sticky.partition("u", 3, &[2]), 2);
            sticky.on_batch_closed("u", 2, 3, &[2]);
        }
        // One partition: stays put.
        let mut sticky = StickyPartitioner::default();
        sticky.partition("v", 1, &[]);
        sticky.on_batch_closed("v", 0, 1, &[]);
        assert_eq!(sticky.partition("v", 1, &[]), 0);
    }
}
