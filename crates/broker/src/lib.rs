//! Layer 3: the Kraftwerk broker.
//!
//! Owns the Kafka listener ([`server`]), one handler per Kafka API
//! ([`handlers`]), the partitions stored here ([`replica_manager`]) and the
//! broker's copy of cluster metadata ([`metadata`], from `kraftwerk-metadata`). Metadata changes go
//! through [`controller::ClusterControl`] to the controller quorum
//! ([`remote`]); a single node is a quorum of one voter in the same
//! process, so every broker takes the same path.
//! Consumer groups are coordinated by [`group`], which keeps its state in
//! the internal topic `__consumer_offsets`; transactions by [`txn`], in
//! `__transaction_state`, whose markers [`markers`] writes.

pub mod connection_limits;
pub mod controller;
mod coordinator_log;
pub use kraftwerk_coordinator::group;
pub use kraftwerk_coordinator::txn;
pub mod handlers;
pub mod lifecycle;
pub mod listeners;
pub mod markers;
pub mod metrics;
pub mod partition;
pub mod quotas;
pub mod remote;
pub use kraftwerk_metadata as metadata;
pub mod replica_manager;
pub mod replication;
pub mod security;
pub mod server;
pub mod stats;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kraftwerk_types::BrokerConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use controller::{ClusterControl, NewTopic};
use metadata::ImageCell;
use replica_manager::ReplicaManager;

/// Everything a request handler may reach.
pub struct BrokerState {
    pub config: BrokerConfig,
    pub image: Arc<ImageCell>,
    pub control: Arc<dyn ClusterControl>,
    pub replicas: Arc<ReplicaManager>,
    pub groups: group::GroupCoordinator,
    pub txns: txn::TransactionCoordinator,
    /// gRPC clients to other brokers' replication listeners: transaction
    /// markers and verification, and the high watermarks `/metrics` asks for.
    pub peer_clients: markers::PeerClients,
    pub metrics: metrics::BrokerMetrics,
    /// Kafka's StandardAuthorizer over the image's ACLs (off without
    /// `authorizer.class.name`).
    pub authorizer: security::authorizer::Authorizer,
    /// Client byte-rate measurements against their quotas.
    pub quotas: quotas::QuotaManager,
    pub shutdown: CancellationToken,
    /// The controller quorum (of one voter in the same process, for a
    /// single node).
    pub quorum: Arc<remote::ControllerClient>,
    /// `host:port` of this node's HTTP listener as other nodes reach it
    /// (registered with the controller), when it serves one.
    pub http_endpoint: Option<String>,
    /// The image the local partitions last matched.
    applied_image: tokio::sync::Mutex<Option<Arc<metadata::MetadataImage>>>,
}

impl BrokerState {
    /// Makes the local partitions match the current image, once per image
    /// version. Opening and deleting logs happen on tokio's blocking pool;
    /// one caller applies at a time, and the others wait for it.
    pub async fn sync_replicas(&self) {
        let image = self.image.load();
        let mut applied = self.applied_image.lock().await;
        // Version 0 is the empty image before the first metadata arrives.
        if applied.as_ref().map_or(0, |a| a.version) == image.version {
            return;
        }
        let replicas = self.replicas.clone();
        let target = image.clone();
        let (shrinks, expands) = match tokio::task::spawn_blocking(move || {
            replicas.apply_image(&target)
        })
        .await
        {
            Ok(changes) => changes,
            Err(e) => {
                // The next image, or the next caller, applies again.
                tracing::error!(error = %e, version = image.version, "applying the metadata image to the local partitions failed");
                return;
            }
        };
        self.metrics.isr_changed(shrinks, expands);
        if let Some(before) = applied.as_ref() {
            self.metrics
                .leaders_elected(metrics::leader_elections(before, &image));
            self.metrics
                .unclean_leaders_elected(metrics::unclean_leader_elections(before, &image));
        }
        *applied = Some(image);
    }

    /// Creates a topic with the broker defaults, as Metadata does for unknown
    /// topics when `auto.create.topics.enable` is set. A lost race with
    /// another creator is fine.
    pub async fn auto_create_topic(&self, name: &str) {
        let topic = NewTopic {
            name: name.to_string(),
            num_partitions: self.config.num_partitions,
            replication_factor: self.config.default_replication_factor,
            assignments: None,
            configs: BTreeMap::new(),
        };
        match self.control.create_topic(topic, false).await {
            Ok(_) => tracing::info!(topic = name, "topic auto-created"),
            Err(e) => {
                tracing::debug!(topic = name, error = %e, "auto-create did not create the topic")
            }
        }
        self.sync_replicas().await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot use log directory {dir}: {source}")]
    LogDir { dir: String, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Controller(#[from] controller::ControllerError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A running broker: its bound address and the means to stop it.
pub struct Broker {
    pub local_addr: SocketAddr,
    state: Arc<BrokerState>,
    tracker: TaskTracker,
    quorum: Arc<remote::ControllerClient>,
    registration: Arc<lifecycle::Registration>,
}

/// What a broker reads and checks before anything binds: its Kafka
/// listeners, each one's security (TLS material, SASL settings), TLS
/// between nodes and the authorizer. A configuration that fails here
/// never starts serving.
struct Checked {
    kafka_listeners: Vec<kraftwerk_types::config::Listener>,
    authorizer: security::authorizer::Authorizer,
    secured: Vec<Arc<security::ListenerSecurity>>,
    controller_tls: Option<Arc<security::TlsCell>>,
    replication_tls: Option<Arc<security::TlsCell>>,
}

impl Checked {
    fn new(config: &BrokerConfig) -> Result<Checked, BrokerError> {
        let kafka_listeners = listeners::kafka_listeners(config);
        if kafka_listeners.is_empty() {
            return Err(BrokerError::Config(
                "`listeners` has no Kafka listener (only controller or REPLICATION ones)".into(),
            ));
        }
        let authorizer =
            security::authorizer::Authorizer::from_config(config).map_err(BrokerError::Config)?;
        let config_error = |e: security::SecurityError| BrokerError::Config(e.to_string());
        let mut secured = Vec::with_capacity(kafka_listeners.len());
        for l in &kafka_listeners {
            let security =
                security::ListenerSecurity::from_config(config, &l.name).map_err(config_error)?;
            secured.push(Arc::new(security));
        }
        let controller_tls =
            security::node_tls(config, &security::controller_listener_name(config))
                .map_err(config_error)?;
        let replication_tls =
            security::node_tls(config, replication::LISTENER_NAME).map_err(config_error)?;
        Ok(Checked {
            kafka_listeners,
            authorizer,
            secured,
            controller_tls,
            replication_tls,
        })
    }
}

/// Checks a broker configuration as [`Broker::start`] does before it binds
/// anything (`kraftwerk server --check`), without starting.
pub fn check_config(config: &BrokerConfig) -> Result<(), BrokerError> {
    Checked::new(config).map(|_| ())
}

impl Broker {
    /// Opens the logs, binds the Kafka listener and starts serving.
    pub async fn start(
        config: BrokerConfig,
        shutdown: CancellationToken,
    ) -> Result<Broker, BrokerError> {
        Broker::start_with_http(config, shutdown, None).await
    }

    /// [`Broker::start`], with more routes served on the HTTP listener
    /// beside `/metrics` (the HTTP API).
    pub async fn start_with_http(
        config: BrokerConfig,
        shutdown: CancellationToken,
        http_routes: Option<axum::Router>,
    ) -> Result<Broker, BrokerError> {
        let dir = &config.log_dirs[0];
        std::fs::create_dir_all(dir).map_err(|source| BrokerError::LogDir {
            dir: dir.display().to_string(),
            source,
        })?;
        let Checked {
            kafka_listeners,
            authorizer,
            secured,
            controller_tls,
            replication_tls,
        } = Checked::new(&config)?;
        let mut bound = Vec::with_capacity(kafka_listeners.len());
        let mut config = config;
        for (l, security) in kafka_listeners.iter().zip(secured) {
            let addr = l.bind_addr();
            let listener = TcpListener::bind(&addr)
                .await
                .map_err(|source| BrokerError::Bind {
                    addr: addr.clone(),
                    source,
                })?;
            let local = listener
                .local_addr()
                .map_err(|source| BrokerError::Bind { addr, source })?;
            // With port 0 the advertised port is the one actually bound.
            for a in config.advertised_listeners.iter_mut() {
                if a.port == 0 && a.name == l.name {
                    a.port = local.port();
                }
            }
            bound.push((Arc::<str>::from(l.name.as_str()), security, listener, local));
        }
        let local_addr = bound[0].3;
        // Before registering (or writing the single node's own registration):
        // the registration carries the HTTP endpoint.
        let http = metrics::bind(&config).await;
        let http_endpoint = http.as_ref().map(|(_, endpoint)| endpoint.clone());
        let mut tls_cells: Vec<_> = bound.iter().filter_map(|b| b.1.tls.clone()).collect();
        tls_cells.extend(controller_tls.iter().chain(&replication_tls).cloned());
        let replication_tls = replication_tls.map(|c| c as Arc<dyn kraftwerk_rpc::NodeTls>);
        let image = Arc::new(ImageCell::default());
        // The metadata comes from the Raft quorum; `kraftwerk server` starts a
        // quorum of one voter beside a single node.
        let voters = config.raw.get("controller.quorum.voters").ok_or_else(|| {
            BrokerError::Config(
                "controller.quorum.voters is not set: a broker needs a controller quorum \
                 (`kraftwerk server` starts one of a single voter for a single node)"
                    .into(),
            )
        })?;
        let quorum = Arc::new(remote::ControllerClient::new(
            remote::parse_voters(voters).map_err(BrokerError::Config)?,
            controller_tls.map(|c| c as Arc<dyn kraftwerk_rpc::NodeTls>),
        ));
        let control: Arc<dyn ClusterControl> =
            Arc::new(remote::RemoteControl::new(quorum.clone(), image.clone()));
        let replicas = Arc::new(ReplicaManager::new(&config));
        replicas.clean_deleted_dirs();
        let state = Arc::new(BrokerState {
            config: config.clone(),
            image,
            control,
            replicas,
            groups: group::GroupCoordinator::new(
                group::CoordinatorConfig::from_broker(&config),
                shutdown.clone(),
            ),
            txns: txn::TransactionCoordinator::new(
                txn::TxnConfig::from_broker(&config),
                shutdown.clone(),
            ),
            peer_clients: markers::PeerClients::new(replication_tls.clone()),
            metrics: metrics::BrokerMetrics::new(),
            authorizer,
            quotas: quotas::QuotaManager::new(&config),
            shutdown: shutdown.clone(),
            quorum: quorum.clone(),
            http_endpoint,
            applied_image: tokio::sync::Mutex::new(None),
        });
        let tracker = TaskTracker::new();
        let registration = Arc::new(lifecycle::Registration::default());
        {
            let client = &quorum;
            let heartbeat_ms: u64 = config
                .raw
                .get("broker.heartbeat.interval.ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(2000);
            // Before registering: the registration carries the endpoint.
            let endpoint = replication::start(
                &state,
                client.clone(),
                replication_tls,
                shutdown.clone(),
                &tracker,
            )
            .await?;
            state.replicas.set_replication_endpoint(endpoint);
            tracker.spawn(lifecycle::follow_metadata(
                state.clone(),
                client.clone(),
                shutdown.clone(),
            ));
            tracker.spawn(lifecycle::heartbeat_loop(
                state.clone(),
                client.clone(),
                registration.clone(),
                Duration::from_millis(heartbeat_ms),
                shutdown.clone(),
            ));
            tracker.spawn(lifecycle::session_loop(
                state.clone(),
                client.clone(),
                registration.clone(),
                shutdown.clone(),
            ));
        }

        let serving = state.clone();
        let serve_shutdown = shutdown.clone();
        let serve_tracker = tracker.clone();
        let serving_registration = registration.clone();
        tracker.spawn(async move {
            // As Kafka's brokers do, this one answers clients once it is
            // registered, caught up with the metadata log and unfenced.
            let unfenced = lifecycle::registered_and_unfenced(&serving, &serving_registration);
            tokio::select! {
                _ = serve_shutdown.cancelled() => return,
                _ = unfenced => {}
            };
            write_meta_properties(&serving.config, &serving.image.load().cluster_id);
            let limits = connection_limits::ConnectionLimits::new(&serving.config);
            for (name, security, listener, _) in bound {
                serve_tracker.spawn(server::serve(
                    listener,
                    name,
                    security,
                    serving.clone(),
                    limits.clone(),
                    serve_shutdown.clone(),
                    serve_tracker.clone(),
                ));
            }
        });
        tracker.spawn(security::reload_certificates(
            tls_cells,
            config
                .value_of("kraftwerk.ssl.reload.interval.ms")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(5000),
            shutdown.clone(),
        ));
        tracker.spawn(housekeeping(state.clone(), shutdown.clone()));
        tracker.spawn(lifecycle::report_offline_replicas(
            state.clone(),
            registration.clone(),
        ));
        // Loads the __consumer_offsets partitions led here, then keeps group timers.
        let coordinator = state.clone();
        tracker.spawn(async move {
            group::run(coordinator.clone(), &coordinator.groups).await;
        });
        // Loads the __transaction_state partitions led here; markers and timeouts.
        tracker.spawn(txn::run(state.clone()));
        if let Some((listener, _)) = http {
            tracker.spawn(metrics::serve(
                state.clone(),
                listener,
                http_routes,
                shutdown.clone(),
            ));
        }
        tracing::info!(node_id = config.node_id, %local_addr, "broker started");
        Ok(Broker {
            local_addr,
            state,
            tracker,
            quorum,
            registration,
        })
    }

    /// Controlled shutdown: leadership moves to other replicas before the
    /// process stops, so clients lose no availability.
    pub async fn controlled_shutdown(&self) {
        lifecycle::controlled_shutdown(&self.state, &self.quorum, &self.registration).await;
    }

    /// Returns once this process's registration is in the broker's metadata
    /// image, unfenced (it serves clients from then on).
    pub async fn unfenced(&self) {
        lifecycle::registered_and_unfenced(&self.state, &self.registration).await;
    }

    /// Waits for every task to finish after the shutdown token fired, then
    /// closes the logs.
    pub async fn wait(self) {
        self.tracker.close();
        self.tracker.wait().await;
        self.state.replicas.close_all();
        tracing::info!("broker stopped");
    }
}

/// Background duties on timers: flush policy, retention and the log
/// cleaner (compaction).
async fn housekeeping(state: Arc<BrokerState>, shutdown: CancellationToken) {
    let retention_every =
        Duration::from_millis(state.config.log_retention_check_interval_ms.max(1));
    let mut flush_tick = tokio::time::interval(Duration::from_secs(1));
    let mut retention_tick = tokio::time::interval(retention_every);
    let cleaner_enabled = state.config.log_cleaner_enable;
    let mut cleaner_tick = tokio::time::interval(Duration::from_millis(
        state.config.log_cleaner_backoff_ms.max(1),
    ));
    cleaner_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A cleaner pass can take long (it rewrites segments), so it runs beside
    // the other duties rather than in this loop; at most one at a time, and
    // shutdown waits for it (it stops between partitions).
    let mut cleaner_pass: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                if let Some(pass) = cleaner_pass.take() {
                    let _ = pass.await;
                }
                return;
            }
            _ = flush_tick.tick() => {
                let s = state.clone();
                let _ = tokio::task::spawn_blocking(move || s.replicas.flush_due(handlers_now_ms())).await;
            }
            _ = retention_tick.tick() => {
                let s = state.clone();
                let _ = tokio::task::spawn_blocking(move || s.replicas.apply_retention(handlers_now_ms())).await;
            }
            _ = cleaner_tick.tick(), if cleaner_enabled => {
                if cleaner_pass.as_ref().is_none_or(|pass| pass.is_finished()) {
                    let (s, stop) = (state.clone(), shutdown.clone());
                    cleaner_pass = Some(tokio::task::spawn_blocking(move || {
                        s.replicas.compact_due(handlers_now_ms(), &stop)
                    }));
                }
            }
        }
    }
}

fn handlers_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Kafka's `meta.properties`, so a log directory says which node and cluster it belongs to.
fn write_meta_properties(config: &BrokerConfig, cluster_id: &str) {
    let text = format!(
        "version=1\nnode.id={}\ncluster.id={cluster_id}\n",
        config.node_id
    );
    let path = config.log_dirs[0].join("meta.properties");
    if let Err(e) = std::fs::write(&path, text) {
        tracing::warn!(path = %path.display(), error = %e, "could not write meta.properties");
    }
}
