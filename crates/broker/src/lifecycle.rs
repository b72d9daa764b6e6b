//! A broker in a cluster: registration, heartbeats, following the metadata
//! log, and controlled shutdown.
//!
//! Timeouts, with Kafka's names and defaults, and the rule between them:
//! `broker.heartbeat.interval.ms` (2000) < `broker.session.timeout.ms`
//! (9000): a broker misses several heartbeats before the controller fences
//! it. The metadata long poll waits at most `METADATA_POLL_WAIT_MS`, well
//! below the RPC timeout of the controller client.

use std::sync::Arc;
use std::time::Duration;

use kraftwerk_metadata::MetadataImage;
use kraftwerk_rpc::controller as pb;
use kraftwerk_types::ErrorCode;
use tokio_util::sync::CancellationToken;

use crate::controller::ControllerError;
use crate::remote::ControllerClient;
use crate::BrokerState;

const METADATA_POLL_WAIT_MS: u32 = 5000;
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// How long a controlled shutdown waits for leadership to move away.
pub const CONTROLLED_SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

/// Registration state shared by the heartbeat loop and controlled shutdown.
#[derive(Default)]
pub struct Registration {
    epoch: parking_lot::Mutex<Option<i64>>,
}

/// Follows the committed metadata image and applies it to this broker.
pub async fn follow_metadata(
    state: Arc<BrokerState>,
    client: Arc<ControllerClient>,
    shutdown: CancellationToken,
) {
    let mut known = 0u64;
    loop {
        let fetched = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = client.fetch_metadata(known, METADATA_POLL_WAIT_MS) => r,
        };
        match fetched.and_then(|r| decode_image(&r).map(|i| (r.version, i))) {
            Ok((version, image)) => {
                // Never step back to an older image, whoever answered.
                if version < state.image.load().version {
                    tracing::debug!(version, "ignoring an older metadata image");
                    continue;
                }
                if version != known || state.image.load().version != version {
                    known = version;
                    state.image.publish(image);
                    state.sync_replicas();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch metadata from the controller quorum; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_BACKOFF) => {}
                }
            }
        }
    }
}

fn decode_image(r: &pb::FetchMetadataResponse) -> Result<MetadataImage, ControllerError> {
    let mut image: MetadataImage = serde_json::from_slice(&r.image)
        .map_err(|e| ControllerError::Unavailable(format!("bad metadata image: {e}")))?;
    image.reindex();
    // Kafka clients send admin requests to the "controller" of Metadata, which
    // must be a broker they can reach: the active controller if it is also a
    // live broker, else the lowest live broker.
    let active = r.active_controller_id.map(|id| id as i32);
    image.controller_id = match active {
        Some(id) if image.brokers.get(&id).is_some_and(|b| !b.fenced) => id,
        _ => image.live_brokers().map(|b| b.node_id).min().unwrap_or(-1),
    };
    Ok(image)
}

/// Registers with the active controller, then heartbeats until shutdown.
pub async fn heartbeat_loop(
    state: Arc<BrokerState>,
    client: Arc<ControllerClient>,
    registration: Arc<Registration>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let incarnation = uuid::Uuid::new_v4().to_string();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let epoch = *registration.epoch.lock();
        let result = match epoch {
            None => register(&state, &client, &incarnation).await.map(|e| {
                *registration.epoch.lock() = Some(e);
                // Follower fetches carry the epoch of this registration, so
                // leaders can tell them from late fetches of an earlier one.
                state.replicas.set_broker_epoch(e);
            }),
            Some(epoch) => heartbeat(&state, &client, epoch, false).await.map(|_| ()),
        };
        if let Err(e) = result {
            match e {
                // 69: what earlier controllers answered for an unknown broker (rolling upgrades).
                ControllerError::Remote { code, .. }
                    if code == ErrorCode::STALE_BROKER_EPOCH.0
                        || code == ErrorCode::BROKER_ID_NOT_REGISTERED.0
                        || code == 69 =>
                {
                    tracing::warn!(error = %e, "the controller does not know this broker's epoch; registering again");
                    *registration.epoch.lock() = None;
                }
                e => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

async fn register(
    state: &BrokerState,
    client: &ControllerClient,
    incarnation: &str,
) -> Result<i64, ControllerError> {
    let request = pb::RegisterBrokerRequest {
        broker_id: state.config.node_id,
        incarnation_id: incarnation.to_string(),
        listeners: crate::listeners::advertised_endpoints(&state.config)
            .into_iter()
            .map(|e| pb::Endpoint {
                name: e.name,
                host: e.host,
                port: u32::from(e.port),
            })
            .collect(),
        rack: state.config.raw.get("broker.rack").cloned(),
        replication_endpoint: state.replicas.replication_endpoint(),
        http_endpoint: state.http_endpoint.clone(),
    };
    let epoch = client
        .call(
            "register broker",
            crate::remote::ATTEMPT_TIMEOUT,
            |mut c| {
                let request = request.clone();
                async move {
                    let r = c.register_broker(request).await?.into_inner();
                    Ok((r.status, r.broker_epoch))
                }
            },
        )
        .await?;
    tracing::info!(
        broker_epoch = epoch,
        "registered with the controller quorum"
    );
    Ok(epoch)
}

async fn heartbeat(
    state: &BrokerState,
    client: &ControllerClient,
    epoch: i64,
    want_shutdown: bool,
) -> Result<pb::BrokerHeartbeatResponse, ControllerError> {
    let request = pb::BrokerHeartbeatRequest {
        broker_id: state.config.node_id,
        broker_epoch: epoch,
        applied_version: state.image.load().version,
        want_shutdown,
    };
    client
        .call(
            "broker heartbeat",
            crate::remote::ATTEMPT_TIMEOUT,
            |mut c| async move {
                let r = c.broker_heartbeat(request).await?.into_inner();
                Ok((r.status.clone(), r))
            },
        )
        .await
}

/// Asks the controller to move leadership away and waits until this broker
/// leads nothing (or the wait runs out), so clients move on before it exits.
pub async fn controlled_shutdown(
    state: &BrokerState,
    client: &ControllerClient,
    registration: &Registration,
) {
    let Some(epoch) = *registration.epoch.lock() else {
        return;
    };
    let deadline = tokio::time::Instant::now() + CONTROLLED_SHUTDOWN_WAIT;
    while tokio::time::Instant::now() < deadline {
        match heartbeat(state, client, epoch, true).await {
            Ok(r) if r.shutdown_ready => {
                tracing::info!("controlled shutdown: leadership moved away");
                return;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "controlled shutdown heartbeat failed"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::warn!("controlled shutdown timed out; stopping anyway");
}
