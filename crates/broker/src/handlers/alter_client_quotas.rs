//! AlterClientQuotas (49): sets and removes quota values of user and
//! client-id entities in the metadata quorum (`kafka-configs.sh --alter
//! --add-config producer_byte_rate=...`). Needs ALTER_CONFIGS on the
//! cluster. Each entity is answered on its own.
//!
//! Every value must be above zero, and the byte rates whole numbers, as
//! Kafka 4.1 checks them (`request_percentage` and
//! `controller_mutation_rate` may be fractions).

use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_cluster, str_bytes, Request};
use crate::controller::QuotaChange;
use crate::quotas::{self, CLIENT_ID, KEYS, USER};
use crate::security::authorizer::op;
use crate::BrokerState;

type Entity = kraftwerk_metadata::QuotaEntity;
/// One entity's answer: done, or refused with a code and message.
type Outcome = Result<(), (ErrorCode, String)>;

/// Kafka's checks on one entity and its operations.
fn check(
    entity: &Entity,
    ops: &[(String, f64, bool)],
) -> Result<Vec<(String, Option<i64>)>, String> {
    if entity.is_empty() {
        return Err("Invalid empty client quota entity".into());
    }
    for (i, (t, _)) in entity.iter().enumerate() {
        if t != USER && t != CLIENT_ID {
            return Err(format!("Unhandled client quota entity type: {t}"));
        }
        if entity[..i].iter().any(|(u, _)| u == t) {
            return Err(format!("Duplicate entity type: {t}"));
        }
    }
    let mut out = Vec::with_capacity(ops.len());
    for (key, value, remove) in ops {
        if !KEYS.contains(&key.as_str()) {
            return Err(format!(
                "Unknown or unenforced quota key {key}; Kraftwerk enforces {}",
                KEYS.join(", ")
            ));
        }
        if *remove {
            out.push((key.clone(), None));
            continue;
        }
        // Kafka's checks and messages, in its order.
        if value.is_nan() || *value <= 0.0 {
            return Err(format!("Quota {key} must be greater than 0"));
        }
        if !quotas::is_fractional(key) && value.fract() != 0.0 {
            return Err(format!("{key} cannot be a fractional value."));
        }
        let Some(stored) = quotas::to_stored(key, *value) else {
            return Err(format!("Quota {key} is too large: {value}"));
        };
        out.push((key.clone(), Some(stored)));
    }
    Ok(out)
}

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let allowed = authorized_on_cluster(state, req, op::ALTER_CONFIGS);
    let mut results: Vec<(Entity, Outcome)> = Vec::new();
    let mut changes: Vec<QuotaChange> = Vec::new();
    for e in &body.entries {
        let mut entity: Entity = e
            .entity
            .iter()
            .map(|c| {
                (
                    c.entity_type.to_string(),
                    c.entity_name.as_ref().map(|n| n.to_string()),
                )
            })
            .collect();
        let ops: Vec<(String, f64, bool)> = e
            .ops
            .iter()
            .map(|o| (o.key.to_string(), o.value, o.remove))
            .collect();
        let reply_entity = entity.clone();
        if !allowed {
            results.push((
                reply_entity,
                Err((
                    ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
                    "Cluster authorization failed.".into(),
                )),
            ));
            continue;
        }
        match check(&entity, &ops) {
            Ok(ops) => {
                entity.sort();
                changes.push((entity, ops));
                results.push((reply_entity, Ok(())));
            }
            Err(message) => {
                results.push((reply_entity, Err((ErrorCode::INVALID_REQUEST, message))))
            }
        }
    }
    let written = if changes.is_empty() || body.validate_only {
        Ok(())
    } else {
        state.control.alter_client_quotas(changes).await
    };
    AlterClientQuotasResponse::default().with_entries(
        results
            .into_iter()
            .map(|(entity, r)| {
                let (code, message) = match (r, &written) {
                    (Err((code, message)), _) => (code, Some(message)),
                    (Ok(()), Err(e)) => (e.error_code(), Some(e.to_string())),
                    (Ok(()), Ok(())) => (ErrorCode::NONE, None),
                };
                EntryData::default()
                    .with_error_code(code.code())
                    .with_error_message(message.map(str_bytes))
                    .with_entity(
                        entity
                            .into_iter()
                            .map(|(t, n)| {
                                EntityData::default()
                                    .with_entity_type(str_bytes(t))
                                    .with_entity_name(n.map(str_bytes))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
