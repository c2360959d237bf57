//! A real third-party client, rumqttc, against the broker: MQTT 3.1.1
//! (`rumqttc::AsyncClient`) and 5.0 (`rumqttc::v5::AsyncClient`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{QUIET, WAIT};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Next packet accepted by `pick` (others, e.g. PINGRESP, are skipped).
async fn next<P: std::fmt::Debug, T>(
    rx: &mut mpsc::UnboundedReceiver<P>,
    what: &str,
    mut pick: impl FnMut(P) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => panic!("no {what} within {WAIT:?}"),
            Ok(None) => panic!("connection ended while waiting for {what}"),
            Ok(Some(p)) => {
                if let Some(t) = pick(p) {
                    return t;
                }
            }
        }
    }
}

mod v4 {
    use super::*;
    use rumqttc::{
        AsyncClient, ConnAck, Event, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode,
    };

    pub struct Client {
        pub client: AsyncClient,
        pub rx: mpsc::UnboundedReceiver<Packet>,
        pub task: JoinHandle<()>,
    }

    pub async fn connect(addr: SocketAddr, id: &str, clean: bool) -> (Client, ConnAck) {
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(clean);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(p).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(_) => break,
                }
            }
        });
        let ack = next(&mut rx, "CONNACK", |p| match p {
            Packet::ConnAck(ack) => Some(ack),
            _ => None,
        })
        .await;
        (Client { client, rx, task }, ack)
    }

    impl Client {
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
            self.client.subscribe(filter, qos).await.unwrap();
            let codes = next(&mut self.rx, "SUBACK", |p| match p {
                Packet::SubAck(ack) => Some(ack.return_codes),
                _ => None,
            })
            .await;
            assert_eq!(codes, vec![SubscribeReasonCode::Success(qos)]);
        }

        /// Publish and wait for the end of the QoS handshake.
        pub async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
            self.client
                .publish(topic, qos, retain, payload.to_vec())
                .await
                .unwrap();
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    next(&mut self.rx, "PUBACK", |p| {
                        matches!(p, Packet::PubAck(_)).then_some(())
                    })
                    .await
                }
                QoS::ExactlyOnce => {
                    next(&mut self.rx, "PUBCOMP", |p| {
                        matches!(p, Packet::PubComp(_)).then_some(())
                    })
                    .await
                }
            }
        }

        pub async fn expect_publish(&mut self) -> Publish {
            next(&mut self.rx, "PUBLISH", |p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .await
        }

        pub async fn expect_no_publish(&mut self) {
            let got = tokio::time::timeout(QUIET, async {
                loop {
                    match self.rx.recv().await {
                        Some(Packet::Publish(p)) => return Some(p),
                        Some(_) => {}
                        None => std::future::pending::<()>().await,
                    }
                }
            })
            .await;
            if let Ok(p) = got {
                panic!("expected no PUBLISH, got {p:?}");
            }
        }

        pub async fn disconnect(self) {
            self.client.disconnect().await.unwrap();
            tokio::time::timeout(WAIT, self.task)
                .await
                .unwrap()
                .unwrap();
        }
    }
}

mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{ConnAck, Packet, PubAckReason, Publish, SubscribeReasonCode};
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    pub struct Client {
        pub client: AsyncClient,
        pub rx: mpsc::UnboundedReceiver<Packet>,
        pub task: JoinHandle<()>,
    }

    pub async fn connect(
        addr: SocketAddr,
        id: &str,
        clean: bool,
        expiry: Option<u32>,
    ) -> (Client, ConnAck) {
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_start(clean);
        options.set_session_expiry_interval(expiry);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(p).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(_) => break,
                }
            }
        });
        let ack = next(&mut rx, "CONNACK", |p| match p {
            Packet::ConnAck(ack) => Some(ack),
            _ => None,
        })
        .await;
        (Client { client, rx, task }, ack)
    }

    impl Client {
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
            self.client.subscribe(filter, qos).await.unwrap();
            let codes = next(&mut self.rx, "SUBACK", |p| match p {
                Packet::SubAck(ack) => Some(ack.return_codes),
                _ => None,
            })
            .await;
            assert_eq!(codes, vec![SubscribeReasonCode::Success(qos)]);
        }

        /// Publish and wait for the end of the QoS handshake; the PUBACK /
        /// PUBREC reason for QoS 1 / 2.
        pub async fn publish(
            &mut self,
            topic: &str,
            qos: QoS,
            retain: bool,
            payload: &[u8],
        ) -> Option<PubAckReason> {
            self.client
                .publish(topic, qos, retain, payload.to_vec())
                .await
                .unwrap();
            match qos {
                QoS::AtMostOnce => None,
                QoS::AtLeastOnce => Some(
                    next(&mut self.rx, "PUBACK", |p| match p {
                        Packet::PubAck(ack) => Some(ack.reason),
                        _ => None,
                    })
                    .await,
                ),
                QoS::ExactlyOnce => {
                    next(&mut self.rx, "PUBCOMP", |p| {
                        matches!(p, Packet::PubComp(_)).then_some(())
                    })
                    .await;
                    None
                }
            }
        }

        pub async fn expect_publish(&mut self) -> Publish {
            next(&mut self.rx, "PUBLISH", |p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .await
        }

        pub async fn expect_no_publish(&mut self) {
            let got = tokio::time::timeout(QUIET, async {
                loop {
                    match self.rx.recv().await {
                        Some(Packet::Publish(p)) => return Some(p),
                        Some(_) => {}
                        None => std::future::pending::<()>().await,
                    }
                }
            })
            .await;
            if let Ok(p) = got {
                panic!("expected no PUBLISH, got {p:?}");
            }
        }

        pub async fn disconnect(self) {
            self.client.disconnect().await.unwrap();
            tokio::time::timeout(WAIT, self.task)
                .await
                .unwrap()
                .unwrap();
        }
    }
}

#[tokio::test]
async fn rumqttc_v311_publish_subscribe_all_qos() {
    use rumqttc::{ConnectReturnCode, QoS};
    let broker = common::start_default().await;
    let (mut sub, ack) = v4::connect(broker.addr, "rq-sub", true).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(!ack.session_present);
    let qos_levels = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    for qos in qos_levels {
        sub.subscribe(&format!("i/{}", qos as u8), qos).await;
    }
    let (mut publisher, _) = v4::connect(broker.addr, "rq-pub", true).await;
    for pub_qos in qos_levels {
        for sub_qos in qos_levels {
            let topic = format!("i/{}", sub_qos as u8);
            let payload = format!("{}{}", pub_qos as u8, sub_qos as u8);
            publisher
                .publish(&topic, pub_qos, false, payload.as_bytes())
                .await;
            let p = sub.expect_publish().await;
            assert_eq!(p.topic, topic);
            assert_eq!(&p.payload[..], payload.as_bytes());
            let want = if (pub_qos as u8) < (sub_qos as u8) {
                pub_qos
            } else {
                sub_qos
            };
            assert_eq!(p.qos, want, "{payload}");
            assert!(!p.retain);
        }
    }
    sub.expect_no_publish().await;
    publisher.disconnect().await;
    sub.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn rumqttc_v5_publish_subscribe_all_qos() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, PubAckReason};
    let broker = common::start_default().await;
    let (mut sub, ack) = v5::connect(broker.addr, "rq5-sub", true, None).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(!ack.session_present);
    let props = ack.properties.expect("CONNACK properties");
    assert_eq!(props.topic_alias_max, Some(65_535));
    let qos_levels = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    for qos in qos_levels {
        sub.subscribe(&format!("i/{}", qos as u8), qos).await;
    }
    let (mut publisher, _) = v5::connect(broker.addr, "rq5-pub", true, None).await;
    // Nobody subscribed: 0x10.
    assert_eq!(
        publisher
            .publish("nobody", QoS::AtLeastOnce, false, b"x")
            .await,
        Some(PubAckReason::NoMatchingSubscribers)
    );
    for pub_qos in qos_levels {
        for sub_qos in qos_levels {
            let topic = format!("i/{}", sub_qos as u8);
            let payload = format!("{}{}", pub_qos as u8, sub_qos as u8);
            let reason = publisher
                .publish(&topic, pub_qos, false, payload.as_bytes())
                .await;
            if pub_qos == QoS::AtLeastOnce {
                assert_eq!(reason, Some(PubAckReason::Success));
            }
            let p = sub.expect_publish().await;
            assert_eq!(&p.topic[..], topic.as_bytes());
            assert_eq!(&p.payload[..], payload.as_bytes());
            let want = if (pub_qos as u8) < (sub_qos as u8) {
                pub_qos
            } else {
                sub_qos
            };
            assert_eq!(p.qos, want, "{payload}");
            assert!(!p.retain);
        }
    }
    sub.expect_no_publish().await;
    publisher.disconnect().await;
    sub.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn rumqttc_retained_round_trip() {
    let broker = common::start_default().await;
    {
        use rumqttc::QoS;
        let (mut publisher, _) = v4::connect(broker.addr, "rr-pub", true).await;
        publisher
            .publish("rr/v4", QoS::AtLeastOnce, true, b"kept4")
            .await;
        publisher.disconnect().await;
        let (mut sub, _) = v4::connect(broker.addr, "rr-sub", true).await;
        sub.subscribe("rr/#", QoS::AtLeastOnce).await;
        let p = sub.expect_publish().await;
        assert_eq!((p.topic.as_str(), &p.payload[..]), ("rr/v4", &b"kept4"[..]));
        assert!(p.retain);
        sub.expect_no_publish().await;
        sub.disconnect().await;
    }
    {
        use rumqttc::v5::mqttbytes::QoS;
        let (mut publisher, _) = v5::connect(broker.addr, "rr5-pub", true, None).await;
        publisher
            .publish("rr/v5", QoS::ExactlyOnce, true, b"kept5")
            .await;
        publisher.disconnect().await;
        let (mut sub, _) = v5::connect(broker.addr, "rr5-sub", true, None).await;
        sub.subscribe("rr/v5", QoS::ExactlyOnce).await;
        let p = sub.expect_publish().await;
        assert_eq!(
            (&p.topic[..], &p.payload[..]),
            (&b"rr/v5"[..], &b"kept5"[..])
        );
        assert!(p.retain);
        assert_eq!(p.qos, QoS::ExactlyOnce);
        sub.expect_no_publish().await;
        sub.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn rumqttc_v311_persistent_session() {
    use rumqttc::QoS;
    let broker = common::start_default().await;
    let (mut sub, ack) = v4::connect(broker.addr, "rp-sub", false).await;
    assert!(!ack.session_present);
    sub.subscribe("rp/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let (mut publisher, _) = v4::connect(broker.addr, "rp-pub", true).await;
    publisher
        .publish("rp/t", QoS::AtLeastOnce, false, b"while away")
        .await;

    let (mut sub, ack) = v4::connect(broker.addr, "rp-sub", false).await;
    assert!(ack.session_present);
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"while away");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    sub.expect_no_publish().await;
    sub.disconnect().await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn rumqttc_v5_persistent_session() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::PubAckReason;
    let broker = common::start_default().await;
    let (mut sub, ack) = v5::connect(broker.addr, "rp5-sub", false, Some(60)).await;
    assert!(!ack.session_present);
    sub.subscribe("rp/t", QoS::ExactlyOnce).await;
    sub.disconnect().await;

    let (mut publisher, _) = v5::connect(broker.addr, "rp5-pub", true, None).await;
    assert_eq!(
        publisher
            .publish("rp/t", QoS::AtLeastOnce, false, b"while away")
            .await,
        Some(PubAckReason::Success)
    );
    publisher
        .publish("rp/t", QoS::ExactlyOnce, false, b"exactly once")
        .await;

    let (mut sub, ack) = v5::connect(broker.addr, "rp5-sub", false, Some(60)).await;
    assert!(ack.session_present);
    let p = sub.expect_publish().await;
    assert_eq!(
        (&p.payload[..], p.qos),
        (&b"while away"[..], QoS::AtLeastOnce)
    );
    let p = sub.expect_publish().await;
    assert_eq!(
        (&p.payload[..], p.qos),
        (&b"exactly once"[..], QoS::ExactlyOnce)
    );
    sub.expect_no_publish().await;
    sub.disconnect().await;
    publisher.disconnect().await;
    broker.shutdown().await;
}
