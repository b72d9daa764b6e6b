//! The HTTP listener of a dedicated controller (`process.roles=controller`):
//! `GET /metrics` with the controller's and the metadata quorum's metrics
//! (`kraftwerk_broker::metrics::ControllerMetrics`). Served only when
//! `kraftwerk.http.listener` is set for the node: its default port is the
//! brokers' on the same host.

use std::sync::Arc;

use kraftwerk_broker::metrics::{self, ControllerMetrics, ControllerView, QuorumView};
use kraftwerk_controller::node::ControllerNode;
use kraftwerk_types::BrokerConfig;
use tokio_util::sync::CancellationToken;

/// Binds the listener and serves until `shutdown`; counts partition leader
/// elections from the controller's image meanwhile. Nothing when the
/// listener is not configured or cannot be bound (logged).
pub async fn start(node: Arc<ControllerNode>, config: &BrokerConfig, shutdown: CancellationToken) {
    if !config.raw.contains_key(metrics::HTTP_LISTENER_KEY) {
        return;
    }
    let Some((listener, _endpoint)) = metrics::bind(config).await else {
        return;
    };
    let controller_metrics = Arc::new(ControllerMetrics::new());
    tokio::spawn(count_elections(
        node.clone(),
        controller_metrics.clone(),
        shutdown.clone(),
    ));
    let render = Arc::new(move || {
        let image = node.image().borrow().clone();
        controller_metrics.render(&image, quorum_view(&node), node.is_leader())
    });
    tokio::spawn(metrics::serve_rendered(listener, render, shutdown));
}

/// The quorum as this controller sees it.
fn quorum_view(node: &ControllerNode) -> QuorumView {
    let s = node.quorum_status();
    let voter_lag = match (s.leader_id == Some(s.node_id), s.last_log_index) {
        (true, Some(end)) => s
            .voters
            .iter()
            .filter_map(|(id, _, matched)| Some((*id, end.saturating_sub((*matched)?))))
            .collect(),
        _ => Vec::new(),
    };
    QuorumView {
        leader: s.leader_id,
        epoch: Some(s.term),
        high_watermark: s.commit_index,
        controller: Some(ControllerView {
            state: Some(s.state.to_string()).filter(|st| !st.is_empty()),
            log_end_offset: s.last_log_index,
            voter_lag,
        }),
    }
}

async fn count_elections(
    node: Arc<ControllerNode>,
    controller_metrics: Arc<ControllerMetrics>,
    shutdown: CancellationToken,
) {
    let mut images = node.image();
    let mut before = images.borrow_and_update().clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = images.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let after = images.borrow_and_update().clone();
        controller_metrics.leaders_elected(metrics::leader_elections(&before, &after));
        controller_metrics
            .unclean_leaders_elected(metrics::unclean_leader_elections(&before, &after));
        before = after;
    }
}
