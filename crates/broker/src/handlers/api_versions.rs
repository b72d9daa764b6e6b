//! ApiVersions (18): the served version table.

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use kraftwerk_protocol::versions::SERVED_APIS;
use kraftwerk_types::ErrorCode;

use super::{Outcome, Request};
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

/// KIP-511's rule for the client software name and version that v3+
/// carries: letters, digits, `-` and `.`, starting and ending with a letter
/// or digit. Kafka answers INVALID_REQUEST to anything else.
fn valid_software_field(value: &str) -> bool {
    let bytes = value.as_bytes();
    let edge = |b: &u8| b.is_ascii_alphanumeric();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            edge(first)
                && edge(last)
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
        }
        _ => false,
    }
}

/// `metadata.version` as Apache Kafka 4.1 numbers its levels: 7 is
/// 3.3-IV3, the first KRaft level; 27 is 4.1-IV1, the release whose API
/// ranges Kraftwerk advertises. Only this feature is reported: finalizing
/// `group.version` or `transaction.version` would tell clients to use the
/// KIP-848 and KIP-890 protocols, which are not served.
const METADATA_VERSION_MIN: i16 = 7;
const METADATA_VERSION: i16 = 27;

/// The feature levels of ApiVersions v3+ (`kafka-features describe`,
/// `Admin.describeFeatures`).
fn with_features(response: ApiVersionsResponse, epoch: i64) -> ApiVersionsResponse {
    let name = || kafka_protocol::protocol::StrBytes::from_static_str("metadata.version");
    response
        .with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(name())
            .with_min_version(METADATA_VERSION_MIN)
            .with_max_version(METADATA_VERSION)])
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(name())
            .with_min_version_level(METADATA_VERSION)
            .with_max_version_level(METADATA_VERSION)])
        .with_finalized_features_epoch(epoch)
}

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: ApiVersionsRequest,
) -> ApiVersionsResponse {
    if req.version >= 3
        && !(valid_software_field(&body.client_software_name)
            && valid_software_field(&body.client_software_version))
    {
        return ApiVersionsResponse::default().with_error_code(ErrorCode::INVALID_REQUEST.code());
    }
    let response = ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_keys());
    if req.version >= 3 {
        // The epoch of the finalized levels: the metadata image's version.
        let epoch = i64::try_from(state.image.load().version).unwrap_or(i64::MAX);
        with_features(response, epoch)
    } else {
        response.with_finalized_features_epoch(-1)
    }
}

/// The v0 answer to an ApiVersions version we do not serve: the error and
/// our ranges, so the client retries with a version inside them.
pub fn unsupported_version_response(out: &mut bytes::BytesMut, correlation_id: i32) -> Outcome {
    super::start_frame(out);
    let body = ApiVersionsResponse::default()
        .with_error_code(ErrorCode::UNSUPPORTED_VERSION.code())
        .with_api_keys(api_keys());
    // Header v0 and body v0 cannot fail to encode: only fixed-width fields.
    if ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(out, 0)
        .is_err()
        || body.encode(out, 0).is_err()
    {
        tracing::error!("ApiVersions v0 response could not be encoded");
    }
    super::finish_frame(out)
}

#[cfg(test)]
mod tests {
    use super::valid_software_field;

    #[test]
    fn client_software_fields_follow_kip_511() {
        for ok in [
            "kafka-python",
            "librdkafka",
            "2.16.1",
            "a",
            "apache-kafka-java",
        ] {
            assert!(valid_software_field(ok), "{ok}");
        }
        for bad in ["", "-x", "x-", "has space", "under_score", ".1"] {
            assert!(!valid_software_field(bad), "{bad:?}");
        }
    }
}
