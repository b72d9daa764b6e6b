//! A broker in a cluster: registration, heartbeats, the session stream,
//! following the metadata log, and controlled shutdown.
//!
//! Timeouts, with Kafka's names and defaults, and the rule between them:
//! `broker.heartbeat.interval.ms` (2000) < `broker.session.timeout.ms`
//! (9000): a broker misses several heartbeats before the controller fences
//! it. The metadata long poll waits at most `METADATA_POLL_WAIT_MS`, well
//! below the RPC timeout of the controller client; it returns as soon as
//! the active controller commits a newer image, so a leadership change
//! reaches every broker within a round trip of its commit.
//!
//! While registered, the broker also holds a session stream open with the
//! active controller (`session_loop`): when this process dies, the kernel
//! closes the stream's connection and the controller fences the broker at
//! once instead of after `broker.session.timeout.ms` (see
//! the controller's `liveness` module). A session that ends while this
//! process lives (the controller changed or stopped leading) is opened
//! again at once.

use std::sync::Arc;
use std::time::Duration;

use kraftwerk_metadata::commands::{self, MetadataCommand};
use kraftwerk_metadata::MetadataImage;
use kraftwerk_rpc::controller as pb;
use kraftwerk_rpc::wire::{self, WireError};
use kraftwerk_types::ErrorCode;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::controller::ControllerError;
use crate::remote::ControllerClient;
use crate::BrokerState;

const METADATA_POLL_WAIT_MS: u32 = 5000;
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Pause before opening a session again when the last one lasted less than
/// [`SESSION_SHORT`], so a controller that ends sessions at once is not
/// hammered.
const SESSION_RETRY_BACKOFF: Duration = Duration::from_millis(200);
const SESSION_SHORT: Duration = Duration::from_secs(1);
/// Pause before asking again a controller that does not know sessions
/// (an older version, during a rolling upgrade).
const SESSION_UNSUPPORTED_BACKOFF: Duration = Duration::from_secs(30);
/// How long a controlled shutdown waits for leadership to move away.
pub const CONTROLLED_SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

/// Registration state shared by the heartbeat loop, the session loop and
/// controlled shutdown: the broker epoch of the current registration.
pub struct Registration {
    epoch: watch::Sender<Option<i64>>,
}

impl Default for Registration {
    fn default() -> Self {
        Registration {
            epoch: watch::Sender::new(None),
        }
    }
}

impl Registration {
    fn get(&self) -> Option<i64> {
        *self.epoch.borrow()
    }

    fn set(&self, epoch: Option<i64>) {
        self.epoch.send_replace(epoch);
    }
}

/// Follows the committed metadata image and applies it to this broker: the
/// whole image first, then the commands committed since the image it
/// holds (applied with the controller's own `commands::apply`, so the
/// result is the controller's image), or the whole image again when the
/// controller no longer keeps them.
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
        let current = state.image.load();
        match fetched.and_then(|r| next_image(r, &current)) {
            Ok(Next::Unchanged) => known = current.version,
            Ok(Next::Image(image)) => {
                // Never step back to an older image, whoever answered.
                if image.version < current.version {
                    tracing::debug!(version = image.version, "ignoring an older metadata image");
                    continue;
                }
                known = image.version;
                if image.version != current.version || image.controller_id != current.controller_id
                {
                    state.image.publish(*image);
                    state.sync_replicas().await;
                }
            }
            // Deltas from a version this broker does not hold: ask for the image.
            Ok(Next::Rebase) => known = 0,
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

/// Where a FetchMetadata answer leads from the image held.
enum Next {
    /// Nothing new (the long poll ran out): the image held stays as it is.
    Unchanged,
    Image(Box<MetadataImage>),
    /// Deltas that do not start at the held image's version.
    Rebase,
}

/// Where a FetchMetadata answer leads from `current`.
fn next_image(
    r: pb::FetchMetadataResponse,
    current: &MetadataImage,
) -> Result<Next, ControllerError> {
    let bad = |e: WireError| ControllerError::Unavailable(format!("bad metadata: {e}"));
    let mut image = match r.delta_base {
        None => {
            let image = r
                .image
                .ok_or_else(|| ControllerError::Unavailable("metadata without an image".into()))?;
            wire::image_from_wire(image).map_err(bad)?
        }
        Some(base) if base != current.version => return Ok(Next::Rebase),
        Some(_) if r.deltas.is_empty() && r.version == current.version => {
            // The active controller may have changed all the same.
            if active_or_lowest_live(current, r.active_controller_id) == current.controller_id {
                return Ok(Next::Unchanged);
            }
            current.clone()
        }
        Some(_) => {
            let mut image = current.clone();
            for delta in r.deltas {
                let command = delta.command.ok_or_else(|| {
                    ControllerError::Unavailable("a metadata delta without its command".into())
                })?;
                let command: MetadataCommand = wire::command_from_wire(command).map_err(bad)?;
                commands::apply(&mut image, &command, delta.index);
            }
            if image.version != r.version {
                // Blank and membership entries carry no command: the image
                // version is that of the last command.
                tracing::debug!(
                    applied = image.version,
                    announced = r.version,
                    "metadata deltas end below the announced version"
                );
            }
            image
        }
    };
    image.controller_id = active_or_lowest_live(&image, r.active_controller_id);
    Ok(Next::Image(Box::new(image)))
}

/// Kafka clients send admin requests to the "controller" of Metadata, which
/// must be a broker they can reach: the active controller if it is also a
/// live broker, else the lowest live broker.
fn active_or_lowest_live(image: &MetadataImage, active: Option<u64>) -> i32 {
    match active.map(|id| id as i32) {
        Some(id) if image.brokers.get(&id).is_some_and(|b| !b.fenced) => id,
        _ => image.live_brokers().map(|b| b.node_id).min().unwrap_or(-1),
    }
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
        let epoch = registration.get();
        let mut registered = None;
        let result = match epoch {
            None => register(&state, &client, &incarnation).await.map(|e| {
                // Follower fetches carry the epoch of this registration, so
                // leaders can tell them from late fetches of an earlier one.
                state.replicas.set_broker_epoch(e);
                registration.set(Some(e));
                registered = Some(e);
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
                    registration.set(None);
                }
                e => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
        let pause = async {
            match registered {
                // The broker is unfenced by the first heartbeat that shows
                // it applied its registration: send that one at once.
                Some(epoch) => registration_applied(&state, epoch, interval).await,
                None => tokio::time::sleep(interval).await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = pause => {}
        }
    }
}

/// Returns once this process's registration (not one of an earlier process
/// of this broker, which the image may still show unfenced after a restart)
/// is in the image, unfenced.
pub async fn registered_and_unfenced(state: &BrokerState, registration: &Registration) {
    let me = state.config.node_id;
    let mut epochs = registration.epoch.subscribe();
    loop {
        let current = *epochs.borrow_and_update();
        match current {
            Some(epoch) => {
                let ready = state.image.wait_until(|image| {
                    image.broker_epochs.get(&me) == Some(&epoch)
                        && image.brokers.get(&me).is_some_and(|b| !b.fenced)
                });
                tokio::select! {
                    _ = ready => return,
                    changed = epochs.changed() => if changed.is_err() { return },
                }
            }
            None => {
                if epochs.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Returns once this broker's image holds its registration at `epoch`
/// (the image version is the metadata offset, the epoch that of the
/// registration), or after `wait_max`.
async fn registration_applied(state: &BrokerState, epoch: i64, wait_max: Duration) {
    let applied = |image: &MetadataImage| i64::try_from(image.version).is_ok_and(|v| v >= epoch);
    let _ = tokio::time::timeout(wait_max, state.image.wait_until(applied)).await;
}

/// Holds a session stream open with the active controller while this
/// broker is registered, and opens a new one whenever it ends (the
/// controller changed, stopped leading, or the broker registered again).
pub async fn session_loop(
    state: Arc<BrokerState>,
    client: Arc<ControllerClient>,
    registration: Arc<Registration>,
    shutdown: CancellationToken,
) {
    let mut epochs = registration.epoch.subscribe();
    loop {
        let current = *epochs.borrow_and_update();
        let Some(epoch) = current else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = epochs.changed() => if changed.is_err() { return },
            }
            continue;
        };
        let started = tokio::time::Instant::now();
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = epochs.changed() => continue,
            opened = client.open_session(state.config.node_id, epoch) => opened,
        };
        let pause = match opened {
            Ok(mut stream) => {
                tracing::debug!(
                    broker_epoch = epoch,
                    "session with the active controller opened"
                );
                let ended = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = epochs.changed() => "this broker registered again".to_string(),
                    ended = session_end(&mut stream) => ended,
                };
                tracing::info!(reason = %ended, "session with the active controller ended; opening a new one");
                if started.elapsed() < SESSION_SHORT {
                    SESSION_RETRY_BACKOFF
                } else {
                    Duration::ZERO
                }
            }
            Err(ControllerError::Remote { code, message })
                if code == ErrorCode::UNSUPPORTED_VERSION.0 =>
            {
                tracing::info!(%message, "the active controller holds no broker sessions; only heartbeats tell it this broker lives");
                SESSION_UNSUPPORTED_BACKOFF
            }
            Err(e @ ControllerError::Remote { .. }) => {
                // Stale epoch or not registered: the heartbeat loop
                // registers again, which changes `epochs`.
                tracing::debug!(error = %e, "session refused");
                SESSION_RETRY_BACKOFF
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a session with the controller quorum; retrying");
                SESSION_RETRY_BACKOFF
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = epochs.changed() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Waits for the end of a session stream; says why it ended.
async fn session_end(stream: &mut tonic::Streaming<pb::BrokerSessionEvent>) -> String {
    loop {
        match stream.message().await {
            Ok(Some(event)) => match event.status {
                Some(s) if s.error_code != 0 => {
                    return format!("controller: {} ({})", s.message, s.error_code)
                }
                _ => continue,
            },
            Ok(None) => return "the controller closed it".to_string(),
            Err(status) => return format!("connection: {}", status.message()),
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
    let Some(epoch) = registration.get() else {
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

/// Tells the controller of partitions whose log could not be opened here
/// (their replicas go offline, and leadership moves to another in-sync
/// replica), as soon as [`ReplicaManager`](crate::replica_manager::ReplicaManager)
/// finds them, retrying every second until the controller takes note.
pub async fn report_offline_replicas(state: Arc<BrokerState>, registration: Arc<Registration>) {
    // A registration clears the controller's offline marks of this broker
    // (a new process opens its logs again), so reports go after this
    // process's registration, and again after every new one.
    let mut reported_under: Option<i64> = None;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = registered_and_unfenced(&state, &registration) => {}
        }
        let epoch = registration.get();
        if reported_under.is_some() && reported_under != epoch {
            state.replicas.offline_unreported_again();
        }
        reported_under = epoch;
        let partitions = state.replicas.unreported_offline();
        if partitions.is_empty() {
            let mut epochs = registration.epoch.subscribe();
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = state.replicas.offline_found() => {}
                _ = epochs.changed() => {}
            }
            continue;
        }
        match state
            .control
            .mark_replicas_offline(state.config.node_id, partitions.clone())
            .await
        {
            Ok(()) => {
                tracing::warn!(
                    ?partitions,
                    "partitions whose log could not be opened reported offline"
                );
                state.replicas.offline_reported(&partitions);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not report offline partitions; retrying");
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
