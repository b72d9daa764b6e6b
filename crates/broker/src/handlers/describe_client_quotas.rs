//! DescribeClientQuotas (48): the quota entities matching a filter, with
//! their values (`kafka-configs.sh --describe --entity-type users`).
//! Needs DESCRIBE_CONFIGS on the cluster.

use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_cluster, str_bytes, Request};
use crate::quotas::{CLIENT_ID, USER};
use crate::security::authorizer::op;
use crate::BrokerState;

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let refuse = |code: ErrorCode, message: String| {
        DescribeClientQuotasResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message)))
            .with_entries(None)
    };
    if !authorized_on_cluster(state, req, op::DESCRIBE_CONFIGS) {
        return refuse(
            ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
            "Cluster authorization failed.".into(),
        );
    }
    let mut filters: Vec<(String, i8, Option<String>)> = Vec::new();
    for c in &body.components {
        let entity_type = c.entity_type.to_string();
        if entity_type != USER && entity_type != CLIENT_ID {
            return refuse(
                ErrorCode::INVALID_REQUEST,
                format!("Custom entity type '{entity_type}' not supported"),
            );
        }
        if filters.iter().any(|(t, _, _)| *t == entity_type) {
            return refuse(
                ErrorCode::INVALID_REQUEST,
                format!("Duplicate entity type '{entity_type}' in the filter"),
            );
        }
        match c.match_type {
            MATCH_EXACT | MATCH_DEFAULT | MATCH_ANY => {}
            other => {
                return refuse(
                    ErrorCode::INVALID_REQUEST,
                    format!("Unknown match type {other}"),
                )
            }
        }
        filters.push((
            entity_type,
            c.match_type,
            c._match.as_ref().map(|m| m.to_string()),
        ));
    }
    let image = state.image.load();
    let entries = image
        .client_quotas
        .iter()
        .filter(|q| {
            let covers = filters.iter().all(|(t, match_type, name)| {
                q.entity.iter().any(|(et, en)| {
                    et == t
                        && match *match_type {
                            MATCH_EXACT => en.is_some() && en == name,
                            MATCH_DEFAULT => en.is_none(),
                            _ => true,
                        }
                })
            });
            let no_more = !body.strict || q.entity.len() == filters.len();
            covers && no_more
        })
        .map(|q| {
            EntryData::default()
                .with_entity(
                    q.entity
                        .iter()
                        .map(|(t, n)| {
                            EntityData::default()
                                .with_entity_type(str_bytes(t.clone()))
                                .with_entity_name(n.clone().map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(
                    q.values
                        .iter()
                        .map(|(k, v)| {
                            ValueData::default()
                                .with_key(str_bytes(k.clone()))
                                .with_value(crate::quotas::from_stored(k, *v))
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}
