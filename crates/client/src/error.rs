//! The one error type of the client crate.

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;

/// Everything that can go wrong talking to a Kafka-compatible cluster.
///
/// Variants say what the caller can do: [`ClientError::is_retriable`] tells
/// whether the same request may succeed after a metadata refresh or a pause.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed (connect, read or write).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes we could not make sense of, or a codec failed.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker answered with a Kafka error code.
    #[error("broker error {name} ({code}){}", .message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        code: i16,
        name: String,
        message: Option<String>,
    },
    /// No answer within `request.timeout.ms` (or the operation's own deadline).
    #[error("request timed out")]
    Timeout,
    /// Client and broker share no version of an API.
    #[error("broker does not support a common version of api {api_key} (client {client_min}..={client_max}, broker {broker:?})")]
    UnsupportedVersion {
        api_key: i16,
        client_min: i16,
        client_max: i16,
        broker: Option<(i16, i16)>,
    },
    /// None of the bootstrap servers or known brokers could be reached.
    #[error("no broker could be reached")]
    NoBrokers,
    /// The topic does not exist (or metadata does not know it yet).
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// The topic exists but not this partition.
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition { topic: String, partition: i32 },
    /// The connection closed while the request was outstanding.
    #[error("connection to {addr} closed: {reason}")]
    Disconnected { addr: String, reason: String },
    /// A record is larger than `max.request.size` allows.
    #[error("record of {size} bytes exceeds max.request.size {max}")]
    RecordTooLarge { size: usize, max: usize },
    /// A configuration value is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A partition has no position and `auto.offset.reset` is `none`.
    #[error("no offset for {topic}-{partition} and auto.offset.reset is none")]
    NoOffset { topic: String, partition: i32 },
    /// The producer or consumer was closed.
    #[error("client is closed")]
    Closed,
}

impl ClientError {
    /// Builds [`ClientError::Kafka`] from a non-zero error code.
    pub fn kafka(code: i16, message: Option<&StrBytes>) -> Self {
        let name = match ResponseError::try_from_code(code) {
            Some(err) => err.to_string(),
            None => "NONE".to_string(),
        };
        ClientError::Kafka {
            code,
            name,
            message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
        }
    }

    /// `Ok(())` for code 0, otherwise the matching [`ClientError::Kafka`].
    pub fn check(code: i16, message: Option<&StrBytes>) -> Result<(), ClientError> {
        if code == 0 {
            Ok(())
        } else {
            Err(Self::kafka(code, message))
        }
    }

    /// The Kafka error code, if the broker sent one.
    pub fn code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the same operation may succeed when tried again (after a
    /// metadata refresh or a back-off).
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Io(_) | ClientError::Timeout | ClientError::Disconnected { .. } => true,
            ClientError::NoBrokers => true,
            ClientError::Kafka { code, .. } => {
                ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable())
            }
            _ => false,
        }
    }

    /// Whether the error means our metadata (leaders, partitions) is stale.
    pub fn needs_metadata_refresh(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } => is_stale_metadata_code(*code),
            ClientError::Io(_) | ClientError::Disconnected { .. } | ClientError::Timeout => true,
            ClientError::UnknownTopic(_) | ClientError::UnknownPartition { .. } => true,
            _ => false,
        }
    }
}

/// Error codes after which a client should refresh metadata before retrying.
pub(crate) fn is_stale_metadata_code(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(
            ResponseError::NotLeaderOrFollower
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::LeaderNotAvailable
                | ResponseError::ReplicaNotAvailable
                | ResponseError::FencedLeaderEpoch
                | ResponseError::UnknownLeaderEpoch
                | ResponseError::UnknownTopicId
                | ResponseError::InconsistentTopicId
                | ResponseError::KafkaStorageError
                | ResponseError::NotController
                | ResponseError::BrokerNotAvailable
        )
    )
}

impl From<kraftwerk_protocol::frame::FrameError> for ClientError {
    fn from(err: kraftwerk_protocol::frame::FrameError) -> Self {
        ClientError::Protocol(err.to_string())
    }
}

/// Codec failures from the `kafka-protocol` crate.
pub(crate) fn codec(err: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(err.to_string())
}

/// Result alias used across the crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_carry_names_and_retriability() {
        let err = ClientError::kafka(6, None);
        assert!(err.to_string().contains("NotLeaderOrFollower"));
        assert!(err.is_retriable());
        assert!(err.needs_metadata_refresh());
        let err = ClientError::kafka(45, Some(&StrBytes::from_static_str("gap")));
        assert!(!err.is_retriable());
        assert!(err.to_string().contains("gap"));
        assert!(ClientError::check(0, None).is_ok());
    }
}
