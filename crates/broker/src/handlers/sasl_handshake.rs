//! SaslHandshake (17) outside an authentication exchange: on a listener
//! without SASL, or on a SASL connection already authenticated when
//! re-authentication is off. Kafka answers ILLEGAL_SASL_STATE; the
//! exchange itself is run by the connection's authenticator
//! (`security::sasl`).

use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use kraftwerk_types::ErrorCode;

use super::Request;
use crate::BrokerState;

pub async fn handle(
    _state: &BrokerState,
    _req: &Request<'_>,
    _body: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(ErrorCode::ILLEGAL_SASL_STATE.code())
}
