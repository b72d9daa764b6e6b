//! InitProducerId (22): producer ids for idempotent and transactional
//! producers.
//!
//! Ids come from the controller in blocks that are never reused. An
//! idempotent producer that presents its current id and epoch (KIP-360,
//! v3+) gets the epoch bumped instead of a new id. A transactional
//! producer goes to the transaction coordinator of its id, which bumps
//! the id's epoch (fencing the previous producer) and ends any
//! transaction it left open.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_cluster, authorized_on_txn, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let failed = |code: ErrorCode| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(id) = &body.transactional_id {
        if !authorized_on_txn(state, req, op::WRITE, id) {
            return failed(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        }
        let given = (body.producer_id.0 >= 0).then_some((body.producer_id.0, body.producer_epoch));
        return match state
            .txns
            .init_producer_id(state, id, body.transaction_timeout_ms, given)
            .await
        {
            Ok((producer_id, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch),
            Err(code) => failed(super::fenced_for_version(code, req.version, 4)),
        };
    }
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or
    // WRITE on some topic (Kafka 2.8+).
    if state.authorizer.enabled() && !authorized_on_cluster(state, req, op::IDEMPOTENT_WRITE) {
        let image = state.image.load();
        let any_topic = state.authorizer.authorize_any(
            &image.acls,
            req.principal,
            &req.peer.ip().to_string(),
            op::WRITE,
            crate::security::authorizer::resource::TOPIC,
        );
        if !any_topic {
            return failed(ErrorCode::CLUSTER_AUTHORIZATION_FAILED);
        }
    }
    // A known producer gets its epoch bumped; once the epoch is exhausted a
    // fresh id follows, as in Kafka.
    if body.producer_id.0 >= 0 && body.producer_epoch >= 0 && body.producer_epoch < i16::MAX - 1 {
        return InitProducerIdResponse::default()
            .with_producer_id(body.producer_id)
            .with_producer_epoch(body.producer_epoch + 1);
    }
    match state.control.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "producer id allocation failed");
            failed(e.error_code())
        }
    }
}
