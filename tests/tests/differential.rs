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
                    (masked(case, &a), masked(case, &b))
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
