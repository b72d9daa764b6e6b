//! SaslAuthenticate (36) outside an authentication exchange: Kafka answers
//! ILLEGAL_SASL_STATE. Tokens of a running exchange never reach the
//! handlers; the connection's authenticator (`security::sasl`) takes them.

use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kraftwerk_types::ErrorCode;

use super::{str_bytes, Request};
use crate::BrokerState;

pub async fn handle(
    _state: &BrokerState,
    _req: &Request<'_>,
    _body: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ErrorCode::ILLEGAL_SASL_STATE.code())
        .with_error_message(Some(str_bytes(
            "SaslAuthenticate request received after successful authentication",
        )))
}
