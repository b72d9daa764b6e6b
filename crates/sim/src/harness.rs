//! What both simulations share: a seeded random source whose sequence is
//! fixed by this file (not by a library version), a trace of what happened
//! with a running hash, and the seed runner (which seeds, from the
//! environment; a failing seed printed with the command that replays it).

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// SplitMix64: tiny, fast, and its sequence for a seed never changes, so a
/// seed written down today replays the same run later.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: seed ^ 0x6a09_e667_f3bc_c909,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        // Multiply-shift: bias far below anything a simulation notices.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "range({lo}, {hi})");
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// True with probability `per_mille` / 1000.
    pub fn per_mille(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.below(items.len() as u64) as usize])
        }
    }

    /// A new generator for a part of the run, so that adding draws in one
    /// part does not shift the sequence of another.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

/// FNV-1a, 64 bits: a hash whose value is the same in every process and
/// every Rust version (std's `DefaultHasher` promises neither).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }

    pub fn of(bytes: &[u8]) -> u64 {
        let mut h = Fnv::default();
        h.write(bytes);
        h.finish()
    }
}

/// How many trace lines a failure report shows.
const TRACE_TAIL_LINES: usize = 400;

/// Everything a run did, in order: a hash over all of it (two runs of a
/// seed must end with the same hash), the last lines for a failure report,
/// and every line when replaying one seed.
#[derive(Debug, Default)]
pub struct Trace {
    hash: Fnv,
    events: u64,
    tail: std::collections::VecDeque<String>,
    /// Every line is printed as it happens (a replayed seed).
    pub verbose: bool,
}

impl Trace {
    pub fn new(verbose: bool) -> Trace {
        Trace {
            verbose,
            ..Trace::default()
        }
    }

    /// Records one event; `at_ms` is simulated time.
    pub fn event(&mut self, at_ms: u64, line: std::fmt::Arguments<'_>) {
        let mut text = String::with_capacity(64);
        let _ = write!(text, "{at_ms:>8} {line}");
        self.hash.write(text.as_bytes());
        self.hash.write(b"\n");
        self.events += 1;
        if self.verbose {
            println!("{text}");
        }
        if self.tail.len() == TRACE_TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text);
    }

    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn tail(&self) -> String {
        self.tail.iter().fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        })
    }
}

/// What one seed's run reports when every invariant held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// The trace hash: the same seed must give the same hash.
    pub trace_hash: u64,
    pub events: u64,
    /// Figures for the report (name, value), summed over seeds.
    pub figures: Vec<(&'static str, u64)>,
}

/// A broken invariant (or a run that could not finish), with the trace
/// that led there.
#[derive(Debug)]
pub struct RunFailure {
    pub message: String,
    pub trace_tail: String,
}

/// Environment variables of the seed runner.
pub const ENV_SEEDS: &str = "KRAFTWERK_SIM_SEEDS";
pub const ENV_SEED: &str = "KRAFTWERK_SIM_SEED";
pub const ENV_SEED_START: &str = "KRAFTWERK_SIM_SEED_START";

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(v) => Some(v),
        Err(_) => panic!("{name}={value:?} is not a number"),
    }
}

/// The seeds this test process runs for one simulation, split into `parts`
/// test functions (which the test harness runs on parallel threads).
/// `KRAFTWERK_SIM_SEED=n` runs only seed `n`, verbosely, in part 0;
/// otherwise `KRAFTWERK_SIM_SEEDS` (default `default_count`) seeds from
/// `KRAFTWERK_SIM_SEED_START` (default 0).
pub fn seeds_for_part(default_count: u64, part: u64, parts: u64) -> (Vec<u64>, bool) {
    if let Some(seed) = env_u64(ENV_SEED) {
        return (if part == 0 { vec![seed] } else { Vec::new() }, true);
    }
    let count = env_u64(ENV_SEEDS).unwrap_or(default_count);
    let start = env_u64(ENV_SEED_START).unwrap_or(0);
    let seeds = (start..start.saturating_add(count))
        .filter(|s| s % parts == part)
        .collect();
    (seeds, false)
}

/// Runs `run(seed, verbose)` for each seed; panics at the first failure
/// (a broken invariant or a panic inside the run) with the seed, the
/// trace's last lines and the command that replays it. Prints the figures.
pub fn run_seeds(
    simulation: &str,
    test_target: &str,
    seeds: &[u64],
    verbose: bool,
    run: impl Fn(u64, bool) -> Result<RunSummary, RunFailure>,
) -> Vec<(&'static str, u64)> {
    let started = Instant::now();
    let mut totals: Vec<(&'static str, u64)> = Vec::new();
    for &seed in seeds {
        let outcome = catch_unwind(AssertUnwindSafe(|| run(seed, verbose)));
        let replay = format!(
            "{ENV_SEED}={seed} cargo test -p kraftwerk-sim --test {test_target} -- --nocapture"
        );
        match outcome {
            Ok(Ok(summary)) => {
                for (name, value) in summary.figures {
                    match totals.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, total)) => *total += value,
                        None => totals.push((name, value)),
                    }
                }
                if verbose {
                    println!(
                        "{simulation}: seed {seed} passed: {} events, trace hash {:016x}",
                        summary.events, summary.trace_hash
                    );
                }
            }
            Ok(Err(failure)) => panic!(
                "{simulation}: seed {seed} FAILED: {}\n--- last trace lines ---\n{}--- replay with ---\n{replay}\n",
                failure.message, failure.trace_tail
            ),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".to_string());
                panic!("{simulation}: seed {seed} PANICKED: {what}\n--- replay with ---\n{replay}\n")
            }
        }
    }
    if !seeds.is_empty() {
        let figures = totals
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{simulation}: {} seeds ({}..={}) passed in {:.1} s; {figures}",
            seeds.len(),
            seeds.first().copied().unwrap_or(0),
            seeds.last().copied().unwrap_or(0),
            started.elapsed().as_secs_f64()
        );
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_random_sequence_of_a_seed_is_fixed() {
        // Written down once: a change here breaks every recorded seed.
        let mut rng = Rng::new(1);
        let first: Vec<u64> = (0..3).map(|_| rng.below(1000)).collect();
        let mut again = Rng::new(1);
        let second: Vec<u64> = (0..3).map(|_| again.below(1000)).collect();
        assert_eq!(first, second);
        assert_eq!(Fnv::of(b"kraftwerk"), Fnv::of(b"kraftwerk"));
        assert_ne!(Fnv::of(b"a"), Fnv::of(b"b"));
    }

    #[test]
    fn ranges_stay_inside() {
        let mut rng = Rng::new(7);
        for _ in 0..10_000 {
            let v = rng.range(3, 5);
            assert!((3..=5).contains(&v));
        }
    }
}
