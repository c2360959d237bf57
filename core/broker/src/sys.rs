//! The `$SYS/broker/...` tree, republished (retained) every `sys_interval`.
//! It lives in the default mountpoint ("") only: tenants on a listener with
//! a mountpoint cannot see it, nor anything about other tenants.

use std::sync::Arc;

use bytes::Bytes;
use fogg_codec::QoS;
use tokio::sync::watch;

use crate::message::Message;
use crate::metrics::Metrics;
use crate::state::BrokerState;

pub(crate) async fn run(broker: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let interval = broker.settings.sys_interval;
    if interval.is_zero() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticker.tick() => publish_all(&broker),
        }
    }
}

fn publish_all(broker: &BrokerState) {
    let m = &broker.metrics;
    let sessions = broker.sessions.lock().len();
    let load = &broker.overload;
    let values: [(&str, String); 22] = [
        ("version", format!("fogg {}", env!("CARGO_PKG_VERSION"))),
        ("uptime", format!("{} seconds", broker.uptime().as_secs())),
        (
            "clients/connected",
            Metrics::get(&m.clients_connected).to_string(),
        ),
        ("clients/total", sessions.to_string()),
        (
            "clients/connects",
            Metrics::get(&m.clients_total_connects).to_string(),
        ),
        (
            "clients/refused",
            Metrics::get(&m.connections_refused).to_string(),
        ),
        (
            "messages/received",
            Metrics::get(&m.messages_received).to_string(),
        ),
        ("messages/sent", Metrics::get(&m.messages_sent).to_string()),
        (
            "publish/messages/received",
            Metrics::get(&m.publish_received).to_string(),
        ),
        (
            "publish/messages/sent",
            Metrics::get(&m.publish_sent).to_string(),
        ),
        (
            "publish/messages/dropped",
            Metrics::get(&m.publish_dropped).to_string(),
        ),
        (
            "bytes/received",
            Metrics::get(&m.bytes_received).to_string(),
        ),
        ("bytes/sent", Metrics::get(&m.bytes_sent).to_string()),
        ("subscriptions/count", broker.topics.count().to_string()),
        (
            "retained messages/count",
            broker.retained.count().to_string(),
        ),
        // Load regulation and shedding (see `[overload]`).
        (
            "load/overloaded",
            u8::from(load.is_overloaded()).to_string(),
        ),
        ("load/queued_bytes", load.queued_bytes().to_string()),
        ("load/rss_bytes", load.rss_bytes().to_string()),
        (
            "load/shed/connections_refused",
            Metrics::get(&load.refused).to_string(),
        ),
        (
            "load/shed/qos0_dropped",
            Metrics::get(&load.shed_qos0).to_string(),
        ),
        (
            "load/refused/max_connections",
            Metrics::get(&load.over_cap).to_string(),
        ),
        (
            "load/ratelimit/pauses",
            Metrics::get(&load.rate_pauses).to_string(),
        ),
    ];
    for (name, value) in values {
        let message = Arc::new(Message {
            topic: format!("$SYS/broker/{name}"),
            payload: Bytes::from(value),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: None,
            expires_at: None,
            origin: 0,
        });
        // $SYS lives in the default mountpoint only (tenants do not see it)
        // and is not written to the store: it is rebuilt at every start.
        broker
            .retained
            .set("", &message.topic, Some(message.clone()));
        broker.route_volatile("", message);
    }
}
