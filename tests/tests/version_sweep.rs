//! The version sweep: for every API key and every version that a real
//! broker advertises in ApiVersions, a valid request sequence gets answers
//! that decode at that version — no closed connection, no answer the
//! client cannot read. What is advertised is taken from the broker itself,
//! so an API added to the table without a case fails here.

use kafka_protocol::messages::ApiKey;
use kraftwerk_tests::cases::{all_cases, keys_without_cases, Ctx};
use kraftwerk_tests::wire::{self, Wire};
use kraftwerk_tests::BrokerProcess;

fn advertised(b: &BrokerProcess) -> Vec<(ApiKey, i16, i16)> {
    let (error_code, keys) = wire::advertised(b.addr);
    assert_eq!(error_code, 0);
    keys.into_iter()
        .map(|(k, min, max)| (ApiKey::try_from(k).expect("a known API key"), min, max))
        .collect()
}

#[test]
fn every_advertised_version_answers() {
    let broker = BrokerProcess::start_with(&["--override", "group.initial.rebalance.delay.ms=0"]);
    let table = advertised(&broker);
    let keys: Vec<ApiKey> = table.iter().map(|t| t.0).collect();
    assert_eq!(
        keys_without_cases(&keys),
        Vec::<ApiKey>::new(),
        "advertised APIs without a sweep case"
    );
    let cases = all_cases(|api| table.iter().find(|t| t.0 == api).map(|t| (t.1, t.2)));
    let versions: usize = table.iter().map(|t| (t.2 - t.1 + 1) as usize).sum();
    let mut failures = Vec::new();
    for case in &cases {
        let wire = Wire::connect(broker.addr).expect("connect");
        match Ctx::new(wire).and_then(|mut ctx| case.run(&mut ctx)) {
            Ok(seen) => {
                // KRAFTWERK_SWEEP_SHOW=Fetch prints what the Fetch cases saw.
                if let Ok(filter) = std::env::var("KRAFTWERK_SWEEP_SHOW") {
                    if case.name().contains(&filter) {
                        eprintln!("{}:\n  {}", case.name(), seen.join("\n  "));
                    }
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.name())),
        }
    }
    eprintln!(
        "version sweep: {} cases over {versions} advertised versions of {} APIs, {} failed",
        cases.len(),
        table.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
}
