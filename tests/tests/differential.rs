//! Kraftwerk against Apache Kafka, the same requests to both: every sweep
//! case (see `kraftwerk_tests::cases`) runs at every version both brokers
//! advertise, and the answers are compared field by field. Fields that may
//! differ between two correct brokers (ids, addresses, clocks) are listed
//! with the cases; every other difference fails the test.
//!
//! The reference broker is the one `tests/peers/kafka.sh start` runs; its
//! address comes from `KRAFTWERK_REFERENCE_BOOTSTRAP`. Without it the test
//! says that it skipped.

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kraftwerk_tests::cases::{all_cases, new_run_id, Case, Ctx, VARIES_EVERYWHERE};
use kraftwerk_tests::wire::Wire;
use kraftwerk_tests::BrokerProcess;

fn advertised(addr: &str) -> Vec<(ApiKey, i16, i16)> {
    let mut wire = Wire::connect(addr).expect("connect");
    let response = wire
        .call(3, &ApiVersionsRequest::default())
        .expect("ApiVersions v3");
    response
        .api_keys
        .iter()
        .filter_map(|k| {
            let key = ApiKey::try_from(k.api_key).ok()?;
            Some((key, k.min_version, k.max_version))
        })
        .collect()
}

/// The lines of `seen` with the values of the case's varying fields masked.
fn masked(case: &Case, seen: &[String]) -> Vec<String> {
    let varies: Vec<&str> = VARIES_EVERYWHERE
        .iter()
        .chain(case.varies.iter())
        .copied()
        .collect();
    seen.iter()
        .map(|line| {
            let Some((path, value)) = line.split_once(" = ") else {
                return line.clone();
            };
            let masked = path.split('.').any(|segment| varies.contains(&segment));
            if masked {
                format!("{path} = <varies>")
            } else {
                format!("{path} = {value}")
            }
        })
        .collect()
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
                let (a, b) = (masked(case, &a), masked(case, &b));
                if a != b {
                    let mut diff = Vec::new();
                    for i in 0..a.len().max(b.len()) {
                        let (x, y) = (a.get(i), b.get(i));
                        if x != y {
                            diff.push(format!(
                                "    kraftwerk: {}\n    kafka:     {}",
                                x.map(String::as_str).unwrap_or("<none>"),
                                y.map(String::as_str).unwrap_or("<none>")
                            ));
                        }
                        if diff.len() >= 6 {
                            break;
                        }
                    }
                    differences.push(format!("{}:\n{}", case.name(), diff.join("\n")));
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
