//! ApiVersions (18): the served version table.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use kraftwerk_protocol::versions::SERVED_APIS;
use kraftwerk_types::ErrorCode;

use super::Request;
use crate::BrokerState;

fn api_keys() -> Vec<ApiVersion> {
    SERVED_APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect()
}

pub async fn handle(
    _state: &BrokerState,
    _req: &Request<'_>,
    _body: ApiVersionsRequest,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_keys())
        .with_finalized_features_epoch(-1)
}

/// The v0 answer to an ApiVersions version we do not serve: the error and
/// our ranges, so the client retries with a version inside them.
pub fn unsupported_version_response(correlation_id: i32) -> Bytes {
    let mut buf = BytesMut::new();
    let body = ApiVersionsResponse::default()
        .with_error_code(ErrorCode::UNSUPPORTED_VERSION.code())
        .with_api_keys(api_keys());
    // Header v0 and body v0 cannot fail to encode: only fixed-width fields.
    if ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, 0)
        .is_err()
        || body.encode(&mut buf, 0).is_err()
    {
        tracing::error!("ApiVersions v0 response could not be encoded");
    }
    buf.freeze()
}
