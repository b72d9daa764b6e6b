//! Kraftwerk against Apache Kafka, the same requests to both: every sweep
//! case (see `kraftwerk_tests::cases`) runs at every version both brokers
//! advertise, and the answers are compared field by field. Fields that may
//! differ between two correct brokers (ids, addresses, clocks) are listed
//! with the cases; every other difference fails the test.
//!
//! The reference broker is the one `tests/peers/kafka.sh start` runs; its
//! address comes from `KRAFTWERK_REFERENCE_BOOTSTRAP`. Without it the test
//! says that it skipped.

use kafka_protocol::messages::ApiKey;
use kraftwerk_tests::cases::{all_cases, new_run_id, Case, Ctx, VARIES_EVERYWHERE};
use kraftwerk_tests::wire::{self, Wire};
use kraftwerk_tests::BrokerProcess;

/// The advertised ranges of the API keys this crate's codec knows.
fn advertised(addr: &str) -> Vec<(ApiKey, i16, i16)> {
    wire::advertised(addr)
        .1
        .into_iter()
        .filter_map(|(k, min, max)| Some((ApiKey::try_from(k).ok()?, min, max)))
        .collect()
}

/// Entries of named lists that Kafka has and Kraftwerk does not, each a
/// difference written down in `docs/compatibility.md`: topic configs of
/// features Kraftwerk does not have (tiered storage, replication
/// throttles, compression levels for recompression, timestamp bounds,
/// segment jitter), and feature levels of protocols it does not serve.
const KAFKA_ONLY_ENTRIES: &[(&str, &[&str])] = &[
    (
        "configs",
        &[
            "compression.gzip.level",
            "compression.lz4.level",
            "compression.zstd.level",
            "file.delete.delay.ms",
            "follower.replication.throttled.replicas",
            "leader.replication.throttled.replicas",
            "local.retention.bytes",
            "local.retention.ms",
            "message.timestamp.after.max.ms",
            "message.timestamp.before.max.ms",
            "preallocate",
            "remote.log.copy.disable",
            "remote.log.delete.on.disable",
            "remote.storage.enable",
            "segment.jitter.ms",
        ],
    ),
    (
        "supported_features",
        &[
            "group.version",
            "transaction.version",
            "kraft.version",
            "share.version",
            "streams.version",
            "eligible.leader.replicas.version",
        ],
    ),
    (
        "finalized_features",
        &[
            "group.version",
            "transaction.version",
            "kraft.version",
            "share.version",
            "streams.version",
            "eligible.leader.replicas.version",
        ],
    ),
];

/// Fields of named entries whose values differ for a reason written down
/// in `docs/compatibility.md`: `(list, entry name, field)`. Kafka 4.x
/// writes a cluster-wide dynamic `min.insync.replicas=1` when its storage
/// is formatted, so it reports that config's source as
/// DYNAMIC_DEFAULT_BROKER_CONFIG (3) where Kraftwerk reports DEFAULT (5).
const DIFFERING_IN_ENTRY: &[(&str, &str, &str)] =
    &[("configs", "min.insync.replicas", "config_source")];

/// `seen` without the entries of [`KAFKA_ONLY_ENTRIES`] and with the
/// fields of [`DIFFERING_IN_ENTRY`] masked: an entry is the line
/// `path.[] =`, its `path.[].name = "..."` line and every other line under
/// `path.[].`.
fn without_kafka_only(seen: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < seen.len() {
        let line = &seen[i];
        if let Some(path) = line.strip_suffix(" =").filter(|p| p.ends_with(".[]")) {
            let list = path
                .trim_end_matches(".[]")
                .rsplit('.')
                .next()
                .unwrap_or("");
            let names = KAFKA_ONLY_ENTRIES
                .iter()
                .find(|(field, _)| *field == list)
                .map(|(_, names)| *names)
                .unwrap_or(&[]);
            let name = seen
                .get(i + 1)
                .and_then(|next| next.strip_prefix(&format!("{path}.name = ")))
                .map(|v| v.trim_matches('"'));
            let inner = format!("{path}.");
            if name.is_some_and(|n| names.contains(&n)) {
                i += 1;
                while i < seen.len() && seen[i].starts_with(&inner) {
                    i += 1;
                }
                continue;
            }
            let differing: Vec<&str> = DIFFERING_IN_ENTRY
                .iter()
                .filter(|(field, entry, _)| *field == list && Some(*entry) == name)
                .map(|(_, _, f)| *f)
                .collect();
            if !differing.is_empty() {
                out.push(line.clone());
                i += 1;
                while i < seen.len() && seen[i].starts_with(&inner) {
                    let field = seen[i][inner.len()..].split(' ').next().unwrap_or("");
                    out.push(if differing.contains(&field) {
                        format!("{inner}{field} = <documented difference>")
                    } else {
                        seen[i].clone()
                    });
                    i += 1;
                }
                continue;
            }
        }
        out.push(line.clone());
        i += 1;
    }
    out
}

/// The lines of `seen` with the values of the case's varying fields
/// masked; a varying list or struct is one masked line, whatever it holds.
fn masked(case: &Case, seen: &[String]) -> Vec<String> {
    let varies: Vec<&str> = VARIES_EVERYWHERE
        .iter()
        .chain(case.varies.iter())
        .copied()
        .collect();
    let mut out = Vec::new();
    for line in seen {
        let (path, value) = match line.split_once(" = ") {
            Some((p, v)) => (p, Some(v)),
            None => (line.trim_end_matches(" ="), None),
        };
        let segments: Vec<&str> = path.split('.').collect();
        match segments.iter().position(|s| varies.contains(s)) {
            // Inside a varying field: already shown by its own line.
            Some(i) if i + 1 < segments.len() => {}
            Some(_) => out.push(format!("{path} = <varies>")),
            None => out.push(match value {
                Some(v) => format!("{path} = {v}"),
                None => format!("{path} ="),
            }),
        }
    }
    out
}

/// The lines only one side has (longest-common-subsequence diff), at most
/// a dozen: `- ` Kraftwerk's, `+ ` Kafka's.
fn line_diff(a: &[String], b: &[String]) -> Vec<String> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while (i < n || j < m) && out.len() < 12 {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("    + kafka:     {}", b[j]));
            j += 1;
        } else {
            out.push(format!("    - kraftwerk: {}", a[i]));
            i += 1;
        }
    }
    out
}

fn run(addr: &str, run_id: &str, case: &Case) -> Result<Vec<String>, String> {
    let wire = Wire::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let mut ctx = Ctx::with_run_id(wire, run_id)?;
    case.run(&mut ctx)
}

#[test]
fn same_answers_as_apache_kafka() {
    let Ok(reference) = std::env::var("KRAFTWERK_REFERENCE_BOOTSTRAP") else {
        eprintln!(
            "skipped: KRAFTWERK_REFERENCE_BOOTSTRAP is not set (scripts/test sets it when \
             tests/peers/kafka.sh could start Apache Kafka)"
        );
        return;
    };
    let broker = BrokerProcess::start_with(&["--override", "group.initial.rebalance.delay.ms=0"]);
    let ours = advertised(&broker.bootstrap());
    let theirs = advertised(&reference);
    let both = |api: ApiKey| {
        let a = ours.iter().find(|t| t.0 == api)?;
        let b = theirs.iter().find(|t| t.0 == api)?;
        let (min, max) = (a.1.max(b.1), a.2.min(b.2));
        (min <= max).then_some((min, max))
    };
    let run_id = new_run_id();
    let cases = all_cases(both);
    let mut differences = Vec::new();
    for case in &cases {
        let kraftwerk = run(&broker.bootstrap(), &run_id, case);
        let kafka = run(&reference, &run_id, case);
        match (kraftwerk, kafka) {
            (Ok(a), Ok(b)) => {
                // KRAFTWERK_DIFF_RAW=1 shows the unmasked values too.
                let (a, b) = if std::env::var("KRAFTWERK_DIFF_RAW").is_ok() {
                    (a, b)
                } else {
                    (
                        masked(case, &without_kafka_only(&a)),
                        masked(case, &without_kafka_only(&b)),
                    )
                };
                if std::env::var("KRAFTWERK_DIFF_SHOW").is_ok_and(|f| case.name().contains(&f)) {
                    eprintln!(
                        "{}\n--- kraftwerk\n{}\n--- kafka\n{}",
                        case.name(),
                        a.join("\n"),
                        b.join("\n")
                    );
                }
                if a != b {
                    differences.push(format!(
                        "{}:\n{}",
                        case.name(),
                        line_diff(&a, &b).join("\n")
                    ));
                }
            }
            (Err(e), Ok(_)) => differences.push(format!("{}: Kraftwerk failed: {e}", case.name())),
            (Ok(_), Err(e)) => differences.push(format!("{}: Kafka failed: {e}", case.name())),
            (Err(a), Err(b)) => {
                differences.push(format!("{}: both failed: {a} / {b}", case.name()))
            }
        }
    }
    eprintln!(
        "differential: {} cases against {reference}, {} differ",
        cases.len(),
        differences.len()
    );
    assert!(
        differences.is_empty(),
        "answers that differ from Apache Kafka's:\n{}",
        differences.join("\n")
    );
}
