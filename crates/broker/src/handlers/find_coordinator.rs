//! FindCoordinator (10): the broker leading the group's `__consumer_offsets`
//! partition. Creates that topic on first use. v4+ batches keys.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kraftwerk_types::ErrorCode;

use super::{str_bytes, Request};
use crate::BrokerState;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if req.version >= 4 {
        body.coordinator_keys
            .iter()
            .map(|k| k.to_string())
            .collect()
    } else {
        vec![body.key.to_string()]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let found = match body.key_type {
            KEY_TYPE_GROUP if key.is_empty() => Err((
                ErrorCode::INVALID_REQUEST,
                "the group id is empty".to_string(),
            )),
            KEY_TYPE_GROUP => {
                state
                    .groups
                    .find_coordinator(state, &key, req.listener)
                    .await
            }
            KEY_TYPE_TRANSACTION => Err((
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                "transactions are not supported by this broker".to_string(),
            )),
            other => Err((
                ErrorCode::INVALID_REQUEST,
                format!("unknown coordinator key type {other}"),
            )),
        };
        let c = Coordinator::default().with_key(str_bytes(key.clone()));
        coordinators.push(match found {
            Ok((node_id, host, port)) => c
                .with_node_id(BrokerId(node_id))
                .with_host(str_bytes(host))
                .with_port(port),
            Err((code, message)) => {
                tracing::debug!(key, code = code.code(), %message, "FindCoordinator refused");
                c.with_node_id(BrokerId(-1))
                    .with_host(str_bytes(""))
                    .with_port(-1)
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(message)))
            }
        });
    }
    if req.version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let Some(c) = coordinators.into_iter().next() else {
        return FindCoordinatorResponse::default();
    };
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(if req.version >= 1 {
            c.error_message
        } else {
            None
        })
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}
