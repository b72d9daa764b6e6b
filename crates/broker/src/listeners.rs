//! Which of a node's `listeners` speak Kafka, and what each advertises.
//!
//! A broker binds every listener except the controller's
//! (`controller.listener.names`, default `CONTROLLER`) and `REPLICATION`
//! (gRPC between brokers). Each connection remembers the listener it came
//! in on, and Metadata, FindCoordinator and DescribeCluster answer with
//! the brokers' endpoints on that same listener, as Kafka does: a client
//! inside a Docker network and one on the host see different addresses
//! for the same brokers.

use kraftwerk_metadata::ListenerEndpoint;
use kraftwerk_types::config::Listener;
use kraftwerk_types::BrokerConfig;

use crate::replication;

fn controller_listener_names(config: &BrokerConfig) -> Vec<String> {
    config
        .raw
        .get("controller.listener.names")
        .map_or("CONTROLLER", String::as_str)
        .split(',')
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The listeners clients speak Kafka to, in the order of `listeners`.
pub fn kafka_listeners(config: &BrokerConfig) -> Vec<Listener> {
    let controller = controller_listener_names(config);
    config
        .listeners
        .iter()
        .filter(|l| l.name != replication::LISTENER_NAME && !controller.contains(&l.name))
        .cloned()
        .collect()
}

/// What this broker registers: one endpoint per Kafka listener, from
/// `advertised.listeners` by name, else the bound address (with a
/// wildcard host replaced by loopback). The inter-broker listener
/// (`inter.broker.listener.name`) comes first; the rest keep their order.
pub fn advertised_endpoints(config: &BrokerConfig) -> Vec<ListenerEndpoint> {
    let mut out: Vec<ListenerEndpoint> = kafka_listeners(config)
        .into_iter()
        .map(|bound| {
            let advertised = config
                .advertised_listeners
                .iter()
                .find(|a| a.name == bound.name)
                .unwrap_or(&bound);
            let host = match advertised.host.as_str() {
                "" | "0.0.0.0" | "::" => "127.0.0.1".to_string(),
                h => h.to_string(),
            };
            ListenerEndpoint {
                name: bound.name.clone(),
                host,
                port: advertised.port,
            }
        })
        .collect();
    if let Some(first) = config.raw.get("inter.broker.listener.name") {
        if let Some(i) = out.iter().position(|e| &e.name == first) {
            let e = out.remove(i);
            out.insert(0, e);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(pairs: &[(&str, &str)]) -> BrokerConfig {
        let raw: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BrokerConfig::from_map(raw).expect("valid config")
    }

    #[test]
    fn compose_style_listeners_advertise_per_name() {
        let c = config(&[
            (
                "listeners",
                "PLAINTEXT://0.0.0.0:9092,PLAINTEXT_HOST://0.0.0.0:19092,CONTROLLER://0.0.0.0:9093,REPLICATION://0.0.0.0:9094",
            ),
            (
                "advertised.listeners",
                "PLAINTEXT_HOST://localhost:19092,PLAINTEXT://kafka-1:9092,REPLICATION://kafka-1:9094",
            ),
            ("inter.broker.listener.name", "PLAINTEXT"),
        ]);
        let names: Vec<_> = kafka_listeners(&c).into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["PLAINTEXT", "PLAINTEXT_HOST"]);
        let ends = advertised_endpoints(&c);
        assert_eq!(ends.len(), 2);
        assert_eq!(
            (ends[0].name.as_str(), ends[0].host.as_str(), ends[0].port),
            ("PLAINTEXT", "kafka-1", 9092)
        );
        assert_eq!(
            (ends[1].name.as_str(), ends[1].host.as_str(), ends[1].port),
            ("PLAINTEXT_HOST", "localhost", 19092)
        );
    }

    #[test]
    fn unadvertised_listener_is_advertised_as_bound() {
        let c = config(&[
            (
                "listeners",
                "EXTERNAL://0.0.0.0:9092,INTERNAL://10.0.0.5:9095",
            ),
            ("advertised.listeners", "EXTERNAL://broker.example:9092"),
            ("controller.listener.names", "CTRL"),
        ]);
        let ends = advertised_endpoints(&c);
        assert_eq!(ends[0].host, "broker.example");
        assert_eq!((ends[1].host.as_str(), ends[1].port), ("10.0.0.5", 9095));
        let wildcard = config(&[("listeners", "PLAINTEXT://0.0.0.0:9092")]);
        assert_eq!(advertised_endpoints(&wildcard)[0].host, "127.0.0.1");
    }
}
