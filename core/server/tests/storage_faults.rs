//! The embedded store on a broken disk: a read-only data directory refuses
//! to start with an error naming it; a full disk refuses the messages it
//! cannot store (never acknowledging them) while the broker keeps running,
//! and every message it did acknowledge is delivered.
//!
//! These tests mount small tmpfs file systems, which needs root (as CI runs
//! here). Without it they say so and pass, except under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use fogg_codec::{
    Packet, Properties, ProtocolVersion, PubAck, Publish, QoS, ReasonCode, Subscribe,
    SubscribeFilter, SubscriptionOptions,
};
use support::{Fogg, RawClient, Recv, WAIT, connect_packet};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A tmpfs of `size` at a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(options: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = format!("cannot mount a tmpfs ({other:?})");
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{why}: CI must run these tests as root"
                );
                eprintln!("SKIPPED: {why}; run as root to test a full or read-only disk");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn config(data_dir: &Path) -> tempfile::TempDir {
    support::dir_with(&[(
        "fogg.toml",
        &support::config_with_broker(&format!(
            "data_dir = {:?}\nmax_offline_messages = 0",
            data_dir.display().to_string()
        )),
    )])
}

#[test]
fn a_read_only_data_dir_is_refused_at_start_naming_it() {
    let Some(fs) = Tmpfs::mount("size=1m,ro") else {
        return;
    };
    let data = fs.path().join("data");
    let conf = config(&data);
    let out = support::output_within(
        support::fogg_command().arg("--config-dir").arg(conf.path()),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // The key, the directory and the operating system's reason.
    assert!(stderr.contains("broker.data_dir"), "{stderr}");
    assert!(stderr.contains(&data.display().to_string()), "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
}

fn persistent_subscriber(addr: std::net::SocketAddr) -> RawClient {
    let mut sub = RawClient::open(addr, V5);
    let Packet::Connect(mut connect) = connect_packet(V5, "sub") else {
        unreachable!()
    };
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(u32::MAX);
    sub.send(&Packet::Connect(connect));
    assert!(matches!(
        sub.recv_within(WAIT),
        Recv::Packet(Packet::ConnAck(_))
    ));
    sub
}

#[test]
fn a_full_disk_refuses_what_it_cannot_store_and_loses_nothing_it_acknowledged() {
    let Some(fs) = Tmpfs::mount("size=24m") else {
        return;
    };
    let data = fs.path().join("data");
    let conf = config(&data);
    let fogg = Fogg::start(conf, 1);
    let addr = fogg.addr();

    let mut sub = persistent_subscriber(addr);
    sub.send(&Packet::Subscribe(Box::new(Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: "fill/#".to_owned(),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..SubscriptionOptions::default()
            },
        }],
        properties: Properties::default(),
    })));
    assert!(matches!(
        sub.recv_within(WAIT),
        Recv::Packet(Packet::SubAck(_))
    ));
    sub.send(&Packet::Disconnect(Default::default()));
    drop(sub);

    // Publish 16 KiB messages until the store refuses one.
    let (mut publisher, _) = RawClient::connect(addr, V5, "filler");
    let payload = Bytes::from(vec![b'x'; 16 * 1024]);
    let mut acked = 0usize;
    let mut refused = None;
    for i in 0..4000u32 {
        publisher.send(&Packet::Publish(Box::new(Publish {
            qos: QoS::AtLeastOnce,
            topic: format!("fill/{i}"),
            packet_id: Some((i % 60_000 + 1) as u16),
            payload: payload.clone(),
            ..Publish::default()
        })));
        match publisher.recv_within(WAIT) {
            Recv::Packet(Packet::PubAck(ack)) if ack.reason == ReasonCode::Success => acked += 1,
            Recv::Packet(Packet::PubAck(ack)) => {
                refused = Some(ack.reason);
                break;
            }
            other => panic!("after {acked} messages: {other:?}\n{}", fogg.log()),
        }
    }
    assert_eq!(
        refused,
        Some(ReasonCode::ImplementationSpecificError),
        "a full disk must refuse (acked {acked})\n{}",
        fogg.log()
    );
    assert!(acked > 100, "the disk held only {acked} messages");
    // Still serving.
    publisher.ping();

    // Every acknowledged message reaches the subscriber.
    let mut sub = persistent_subscriber(addr);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < acked {
        match sub.recv_within(WAIT) {
            Recv::Packet(Packet::Publish(p)) => {
                seen.insert(p.topic.clone());
                sub.send(&Packet::PubAck(PubAck::new(p.packet_id.unwrap())));
            }
            other => panic!(
                "{} of {acked} delivered, then {other:?}\n{}",
                seen.len(),
                fogg.log()
            ),
        }
    }
    for i in 0..acked {
        assert!(seen.contains(&format!("fill/{i}")), "fill/{i} lost");
    }
}
