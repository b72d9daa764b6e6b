//! The API versions Kraftwerk serves.
//!
//! The ranges follow Apache Kafka 4.0's broker so that clients that infer a
//! broker release from ApiVersions (kafka-python) infer 4.0. The only
//! narrowing is Produce, whose v0-v2 carry the pre-v2 message formats that
//! Kraftwerk does not store; 4.0 advertises them but rejects their payloads.
//! `docs/compatibility.md` is checked against this table by a test.

use kafka_protocol::messages::ApiKey;

/// One served API and its inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedApi {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ServedApi {
    ServedApi { key, min, max }
}

/// Every API the broker answers, in API-key order.
pub static SERVED_APIS: &[ServedApi] = &[
    api(ApiKey::Produce, 3, 12),
    api(ApiKey::Fetch, 4, 17),
    api(ApiKey::ListOffsets, 1, 10),
    api(ApiKey::Metadata, 0, 13),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 2, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::AddPartitionsToTxn, 0, 3),
    api(ApiKey::AddOffsetsToTxn, 0, 3),
    api(ApiKey::EndTxn, 0, 4),
    api(ApiKey::WriteTxnMarkers, 1, 1),
    api(ApiKey::TxnOffsetCommit, 0, 4),
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeClientQuotas, 0, 1),
    api(ApiKey::AlterClientQuotas, 0, 1),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    api(ApiKey::DescribeQuorum, 0, 2),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
];

/// The served range of an API key, if Kraftwerk serves it.
pub fn served(api_key: i16) -> Option<ServedApi> {
    SERVED_APIS
        .iter()
        .copied()
        .find(|a| a.key as i16 == api_key)
}

/// Kafka's name of an API key, for logs and docs.
pub fn api_name(api_key: i16) -> String {
    match ApiKey::try_from(api_key) {
        Ok(key) => format!("{key:?}"),
        Err(_) => format!("Unknown({api_key})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    /// Every advertised version must be one the codec can decode.
    #[test]
    fn served_ranges_are_within_the_codec() {
        for a in SERVED_APIS {
            let codec = match a.key {
                ApiKey::Produce => ProduceRequest::VERSIONS,
                ApiKey::Fetch => FetchRequest::VERSIONS,
                ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
                ApiKey::Metadata => MetadataRequest::VERSIONS,
                ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
                ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
                ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
                ApiKey::JoinGroup => JoinGroupRequest::VERSIONS,
                ApiKey::Heartbeat => HeartbeatRequest::VERSIONS,
                ApiKey::LeaveGroup => LeaveGroupRequest::VERSIONS,
                ApiKey::SyncGroup => SyncGroupRequest::VERSIONS,
                ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
                ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
                ApiKey::DeleteGroups => DeleteGroupsRequest::VERSIONS,
                ApiKey::OffsetDelete => OffsetDeleteRequest::VERSIONS,
                ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
                ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
                ApiKey::DeleteTopics => DeleteTopicsRequest::VERSIONS,
                ApiKey::DeleteRecords => DeleteRecordsRequest::VERSIONS,
                ApiKey::InitProducerId => InitProducerIdRequest::VERSIONS,
                ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::VERSIONS,
                ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
                ApiKey::AlterConfigs => AlterConfigsRequest::VERSIONS,
                ApiKey::DescribeLogDirs => DescribeLogDirsRequest::VERSIONS,
                ApiKey::CreatePartitions => CreatePartitionsRequest::VERSIONS,
                ApiKey::ElectLeaders => ElectLeadersRequest::VERSIONS,
                ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::VERSIONS,
                ApiKey::AlterPartitionReassignments => AlterPartitionReassignmentsRequest::VERSIONS,
                ApiKey::ListPartitionReassignments => ListPartitionReassignmentsRequest::VERSIONS,
                ApiKey::DescribeQuorum => DescribeQuorumRequest::VERSIONS,
                ApiKey::DescribeCluster => DescribeClusterRequest::VERSIONS,
                ApiKey::DescribeProducers => DescribeProducersRequest::VERSIONS,
                ApiKey::AddPartitionsToTxn => AddPartitionsToTxnRequest::VERSIONS,
                ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::VERSIONS,
                ApiKey::EndTxn => EndTxnRequest::VERSIONS,
                ApiKey::WriteTxnMarkers => WriteTxnMarkersRequest::VERSIONS,
                ApiKey::TxnOffsetCommit => TxnOffsetCommitRequest::VERSIONS,
                ApiKey::DescribeTransactions => DescribeTransactionsRequest::VERSIONS,
                ApiKey::ListTransactions => ListTransactionsRequest::VERSIONS,
                ApiKey::SaslHandshake => SaslHandshakeRequest::VERSIONS,
                ApiKey::DescribeAcls => DescribeAclsRequest::VERSIONS,
                ApiKey::DescribeClientQuotas => DescribeClientQuotasRequest::VERSIONS,
                ApiKey::AlterClientQuotas => AlterClientQuotasRequest::VERSIONS,
                ApiKey::CreateAcls => CreateAclsRequest::VERSIONS,
                ApiKey::DeleteAcls => DeleteAclsRequest::VERSIONS,
                ApiKey::SaslAuthenticate => SaslAuthenticateRequest::VERSIONS,
                ApiKey::DescribeUserScramCredentials => {
                    DescribeUserScramCredentialsRequest::VERSIONS
                }
                ApiKey::AlterUserScramCredentials => AlterUserScramCredentialsRequest::VERSIONS,
                other => panic!("no codec check for {other:?}"),
            };
            assert!(
                codec.min <= a.min && a.max <= codec.max,
                "{:?} {}..{} outside {}",
                a.key,
                a.min,
                a.max,
                codec
            );
        }
    }

    #[test]
    fn table_is_sorted_and_unique() {
        for w in SERVED_APIS.windows(2) {
            assert!((w[0].key as i16) < (w[1].key as i16));
        }
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    /// `docs/compatibility.md` lists exactly the served table.
    #[test]
    fn compatibility_doc_matches_served_table() {
        let doc = include_str!("../../../docs/compatibility.md");
        let rows: Vec<(String, i16, i16, i16)> = doc
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| API"))
            .filter_map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                Some((
                    cells[0].to_string(),
                    cells[1].parse().ok()?,
                    cells[2].parse().ok()?,
                    cells[3].parse().ok()?,
                ))
            })
            .collect();
        let expected: Vec<(String, i16, i16, i16)> = SERVED_APIS
            .iter()
            .map(|a| (format!("{:?}", a.key), a.key as i16, a.min, a.max))
            .collect();
        assert_eq!(rows, expected, "docs/compatibility.md is out of date");
    }
}
