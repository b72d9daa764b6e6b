//! Who a connection is: TLS and SASL on Kafka listeners.
//!
//! Each Kafka listener has a security protocol
//! (`listener.security.protocol.map`, Kafka's names). At startup every
//! listener's settings are read and checked ([`ListenerSecurity`]); one
//! that asks for something that cannot be given stops the broker with the
//! key's name, never serving less security than configured. A connection
//! then carries a principal: `User:ANONYMOUS` on PLAINTEXT, the client
//! certificate's subject on SSL with a certificate, the SASL user after
//! authentication.
//!
//! The listeners between nodes carry gRPC, in PLAINTEXT or in mutual TLS
//! ([`node_tls`]).

pub mod authorizer;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use kraftwerk_types::config::SecurityProtocol;
use kraftwerk_types::BrokerConfig;
use tokio_util::sync::CancellationToken;

pub use sasl::{Authenticator, SaslSettings, Step};
pub use tls::TlsCell;

/// The principal of a connection nobody authenticated.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("listener {listener}: {key}: {reason}")]
    Config {
        listener: String,
        key: String,
        reason: String,
    },
}

/// One Kafka listener's security, ready to serve.
pub struct ListenerSecurity {
    pub protocol: SecurityProtocol,
    pub tls: Option<Arc<TlsCell>>,
    pub sasl: Option<Arc<SaslSettings>>,
    /// How a client certificate's subject becomes the principal
    /// (`ssl.principal.mapping.rules`).
    pub principal_mapper: kraftwerk_tls::PrincipalMapper,
}

impl ListenerSecurity {
    pub fn from_config(config: &BrokerConfig, listener: &str) -> Result<Self, SecurityError> {
        let protocol = config.security_protocol(listener);
        let tls = if protocol.uses_tls() {
            let settings = tls::TlsSettings::from_config(config, listener)?;
            Some(Arc::new(TlsCell::new(settings)?))
        } else {
            None
        };
        let sasl = if protocol.uses_sasl() {
            Some(Arc::new(SaslSettings::from_config(config, listener)?))
        } else {
            None
        };
        const RULES: &str = "ssl.principal.mapping.rules";
        let principal_mapper = match config.listener_value(listener, RULES) {
            None => kraftwerk_tls::PrincipalMapper::default_rules(),
            Some(rules) => kraftwerk_tls::PrincipalMapper::parse(&rules).map_err(|reason| {
                SecurityError::Config {
                    listener: listener.to_string(),
                    key: RULES.into(),
                    reason,
                }
            })?,
        };
        Ok(ListenerSecurity {
            protocol,
            tls,
            sasl,
            principal_mapper,
        })
    }
}

/// TLS on a listener between nodes (the controller's, `REPLICATION`) when
/// its protocol is SSL: the configuration this node serves it with and
/// dials it on other nodes with (`listener.name.<name>.ssl.*`).
pub fn node_tls(
    config: &BrokerConfig,
    listener: &str,
) -> Result<Option<Arc<TlsCell>>, SecurityError> {
    match config.security_protocol(listener) {
        SecurityProtocol::Ssl => Ok(Some(Arc::new(TlsCell::new(tls::TlsSettings::for_node(
            config, listener,
        )?)?))),
        _ => Ok(None),
    }
}

/// The name of the controller listener: the first of
/// `controller.listener.names`.
pub fn controller_listener_name(config: &BrokerConfig) -> String {
    config
        .value_of("controller.listener.names")
        .and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find(|n| !n.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "CONTROLLER".into())
}

/// Re-reads the listeners' certificate files every
/// `kraftwerk.ssl.reload.interval.ms` (0: never).
pub async fn reload_certificates(
    cells: Vec<Arc<TlsCell>>,
    interval_ms: u64,
    shutdown: CancellationToken,
) {
    if cells.is_empty() || interval_ms == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for cell in &cells {
            cell.reload_if_changed();
        }
    }
}
