//! The transaction half of [`Admin`], as Kafka's admin client has it:
//! list and describe transactions (at their coordinators), describe the
//! producers of a partition (at its leader), and abort a transaction on
//! one partition by writing its ABORT marker there (WriteTxnMarkers to the
//! leader), which is how a hanging transaction is ended.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest, ProducerId,
    TopicName, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::error::{ClientError, Result};
use crate::group::CoordinatorLink;

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// One transactional id as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTransaction {
    pub transactional_id: String,
    pub producer_id: i64,
    /// Kafka's state name: Empty, Ongoing, PrepareCommit, ...
    pub state: String,
    pub coordinator_id: i32,
}

/// A transactional id as DescribeTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    pub transactional_id: String,
    pub coordinator_id: i32,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// When the open transaction started, -1 when none is open.
    pub start_time_ms: i64,
    pub partitions: Vec<(String, i32)>,
}

/// One producer of a partition as DescribeProducers reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerDescription {
    pub producer_id: i64,
    pub producer_epoch: i32,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// The first offset of its open transaction in the partition, -1 for none.
    pub current_txn_start_offset: i64,
}

impl Admin {
    /// Every transactional id of every broker's coordinator, sorted.
    pub async fn list_transactions(&self) -> Result<Vec<ListedTransaction>> {
        let snapshot = self.cluster().refresh_metadata().await?;
        let mut found: BTreeMap<String, ListedTransaction> = BTreeMap::new();
        for broker in snapshot.brokers.keys() {
            let connection = self.cluster().connection(*broker).await?;
            let response = connection.send(ListTransactionsRequest::default()).await?;
            ClientError::check(response.error_code, None)?;
            for t in response.transaction_states {
                let transactional_id = t.transactional_id.0.to_string();
                found.insert(
                    transactional_id.clone(),
                    ListedTransaction {
                        transactional_id,
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                        coordinator_id: *broker,
                    },
                );
            }
        }
        Ok(found.into_values().collect())
    }

    /// A transactional id's state at its coordinator.
    pub async fn describe_transaction(
        &self,
        transactional_id: &str,
    ) -> Result<TransactionDescription> {
        let link = CoordinatorLink::for_transaction(self.cluster().clone(), transactional_id);
        let (response, coordinator_id) = link
            .send_with_node(
                |_| {
                    DescribeTransactionsRequest::default()
                        .with_transactional_ids(vec![TransactionalId(str_bytes(transactional_id))])
                },
                |response| {
                    response
                        .transaction_states
                        .first()
                        .map_or(0, |t| t.error_code)
                },
            )
            .await?;
        let t = response
            .transaction_states
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("DescribeTransactions returned nothing".into()))?;
        ClientError::check(t.error_code, None)?;
        let mut partitions = Vec::new();
        for topic in &t.topics {
            for p in &topic.partitions {
                partitions.push((topic.topic.0.to_string(), *p));
            }
        }
        partitions.sort();
        Ok(TransactionDescription {
            transactional_id: t.transactional_id.0.to_string(),
            coordinator_id,
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions,
        })
    }

    /// The producers with data in a partition, from its leader.
    pub async fn describe_producers(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<ProducerDescription>> {
        let (_, connection) = self.cluster().leader_connection(topic, partition).await?;
        let request = DescribeProducersRequest::default()
            .with_topics(vec![TopicRequest::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partition_indexes(vec![partition])]);
        let response = connection.send(request).await?;
        let p = response
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .ok_or_else(|| ClientError::Protocol("DescribeProducers returned nothing".into()))?;
        ClientError::check(p.error_code, p.error_message.as_ref())?;
        Ok(p.active_producers
            .into_iter()
            .map(|a| ProducerDescription {
                producer_id: a.producer_id.0,
                producer_epoch: a.producer_epoch,
                last_sequence: a.last_sequence,
                last_timestamp: a.last_timestamp,
                coordinator_epoch: a.coordinator_epoch,
                current_txn_start_offset: a.current_txn_start_offset,
            })
            .collect())
    }

    /// Ends a producer's transaction on one partition with an ABORT marker
    /// written by the partition's leader (WriteTxnMarkers).
    pub async fn abort_transaction(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<()> {
        let (_, connection) = self.cluster().leader_connection(topic, partition).await?;
        let request =
            WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch)
                .with_transaction_result(false)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(TopicName(str_bytes(topic)))
                    .with_partition_indexes(vec![partition])])]);
        let response = connection.send(request).await?;
        let code = response
            .markers
            .iter()
            .flat_map(|m| &m.topics)
            .flat_map(|t| &t.partitions)
            .map(|p| p.error_code)
            .find(|c| *c != 0)
            .unwrap_or(0);
        ClientError::check(code, None)
    }
}
