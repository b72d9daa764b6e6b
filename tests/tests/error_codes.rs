//! Kraftwerk's one table of error codes against Kafka's own `Errors`, as
//! the `kafka-protocol` crate carries them: every named code has Kafka's
//! number and Kafka's name.

use kafka_protocol::error::ResponseError;
use kraftwerk_types::ErrorCode;

/// `NOT_LEADER_OR_FOLLOWER` -> `NotLeaderOrFollower`.
fn camel(screaming: &str) -> String {
    screaming
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_string() + &chars.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

#[test]
fn every_named_code_is_kafkas_number_and_name() {
    assert!(ErrorCode::NAMED.len() > 50);
    let mut seen = std::collections::HashSet::new();
    for (name, code) in ErrorCode::NAMED {
        assert!(
            seen.insert(code.code()),
            "{name}: code {} named twice",
            code.code()
        );
        if *code == ErrorCode::NONE {
            continue;
        }
        let kafka = ResponseError::try_from_code(code.code()).expect("not NONE");
        assert!(
            !matches!(kafka, ResponseError::Unknown(_)),
            "{name} = {}: not a Kafka error code",
            code.code()
        );
        assert_eq!(
            format!("{kafka:?}"),
            camel(name),
            "{name} = {}: Kafka calls this code {kafka:?}",
            code.code()
        );
        assert_eq!(code.name(), Some(*name));
    }
    assert_eq!(ErrorCode::BROKER_ID_NOT_REGISTERED.code(), 102);
}
