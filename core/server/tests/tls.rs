//! TLS listeners end to end: the `fogg` binary with certificates made per
//! test, driven by `mosquitto_pub` / `mosquitto_sub` (`--cafile`, `--cert`,
//! `--key`), rumqttc with rustls, and a raw client over tokio-rustls where a
//! reason code or the moment of a close must be read exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
mod transports;

use std::fs;

use fogg_codec::{ProtocolVersion, ReasonCode};
use fogg_transport::test_pki::{Ca, Files, client_config};
use support::{Fogg, Mqtt, Sub, WAIT, dir_with, eventually, fogg_command, output_within};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use transports::{Client, Pki, tls_connect};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Start fogg with one `tls` listener (plus `extra` listener keys) and
/// `rest` appended to the configuration; the PKI lives in the config dir.
fn start_tls(extra: &str, rest: &str) -> (Fogg, Pki) {
    let dir = dir_with(&[]);
    let pki = Pki::new(dir.path());
    let config = format!(
        "[[listeners]]\nname = \"tls\"\nkind = \"tls\"\nbind = \"127.0.0.1:0\"\n{}{extra}\n{rest}",
        pki.listener_keys()
    );
    fs::write(dir.path().join("fogg.toml"), config).unwrap();
    (Fogg::start(dir, 1), pki)
}

/// mosquitto TLS arguments: trust `cafile`, present `cert` if given.
fn tls_args(cafile: &std::path::Path, cert: Option<&Files>) -> Vec<String> {
    let mut args = vec!["--cafile".to_owned(), cafile.display().to_string()];
    if let Some(files) = cert {
        args.extend([
            "--cert".to_owned(),
            files.cert.display().to_string(),
            "--key".to_owned(),
            files.key.display().to_string(),
        ]);
    }
    args
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `mosquitto_pub` once; its exit status and stderr.
fn try_mosquitto_pub(port: u16, args: &[&str]) -> (bool, String) {
    let out = output_within(
        std::process::Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "mqttv311"])
            .args(["-t", "t", "-m", "x"])
            .args(args),
        WAIT,
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mosquitto_clients_with_client_certificates_round_trip() {
    require_mosquitto_clients!();
    let (fogg, pki) = start_tls("require_client_cert = true\n", "");
    let port = fogg.port();
    let sub_cert = pki.client("subscriber");
    let pub_cert = pki.client("publisher");
    for version in [Mqtt::V311, Mqtt::V5] {
        let sub = Sub::start_with(
            port,
            version,
            "secure/#",
            1,
            1,
            &refs(&tls_args(&pki.ca_file, Some(&sub_cert))),
        );
        let mut args = tls_args(&pki.ca_file, Some(&pub_cert));
        args.extend(["-q", "1", "-t", "secure/x", "-m", "over tls"].map(str::to_owned));
        support::mosquitto_pub(port, version, &refs(&args));
        let got = sub.finish();
        assert_eq!(got.len(), 1, "{version:?}: {got:?}");
        assert_eq!(got[0].payload, "over tls");
    }
    // Without a client certificate the handshake is refused and logged
    // with the peer and the reason.
    let (ok, stderr) = try_mosquitto_pub(port, &refs(&tls_args(&pki.ca_file, None)));
    assert!(!ok, "a client without a certificate got through: {stderr}");
    eventually("the refusal in the log", WAIT, || {
        let log = fogg.log();
        (log.contains("connection refused")
            && log.contains("TLS handshake")
            && log.contains("peer=127.0.0.1:"))
        .then_some(())
    });
}

#[test]
fn clients_refuse_a_server_signed_by_a_ca_they_do_not_trust() {
    require_mosquitto_clients!();
    let (fogg, pki) = start_tls("", "");
    let (ok, stderr) = try_mosquitto_pub(fogg.port(), &refs(&tls_args(&pki.other_file, None)));
    assert!(!ok, "mosquitto_pub trusted an unknown CA");
    assert!(
        stderr.contains("certificate verify failed") || stderr.contains("Error"),
        "{stderr}"
    );
    // The broker still serves a client that trusts the right CA.
    let (ok, stderr) = try_mosquitto_pub(fogg.port(), &refs(&tls_args(&pki.ca_file, None)));
    assert!(ok, "{stderr}");
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused_by_clients() {
    let dir = dir_with(&[]);
    let ca = Ca::new("Fogg Test CA");
    let expired = ca.expired_server().write(dir.path(), "expired");
    let config = format!(
        "[[listeners]]\nname = \"tls\"\nkind = \"tls\"\nbind = \"127.0.0.1:0\"\ncertfile = \"{}\"\nkeyfile = \"{}\"\n",
        expired.cert.display(),
        expired.key.display()
    );
    fs::write(dir.path().join("fogg.toml"), config).unwrap();
    let cafile = ca.write(dir.path(), "ca.crt");
    let fogg = Fogg::start(dir, 1);
    // The broker warns at load time.
    assert!(
        fogg.log().contains("outside its validity period"),
        "{}",
        fogg.log()
    );
    let e = tls_connect(fogg.addr(), client_config(&ca, None))
        .await
        .expect_err("expired certificate accepted");
    assert!(e.to_string().contains("expired"), "{e}");
    if support::have_mosquitto_clients() {
        let (ok, stderr) = try_mosquitto_pub(fogg.port(), &refs(&tls_args(&cafile, None)));
        assert!(
            !ok,
            "mosquitto_pub accepted an expired certificate: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let (fogg, pki) = start_tls("require_client_cert = true\n", "");
    let foreign = pki.other.client("intruder");
    let config = client_config(&pki.ca, Some(&foreign));
    // TLS 1.3: the client learns of the refusal on its first read.
    if let Ok(stream) = tls_connect(fogg.addr(), config).await {
        let mut client = Client::new(stream, V5);
        client.send(&support::connect_packet(V5, "intruder")).await;
        assert!(
            client.recv().await.is_none(),
            "a foreign certificate got a CONNACK"
        );
    }
    eventually("the refusal in the log", WAIT, || {
        let log = fogg.log();
        (log.contains("connection refused") && log.contains("TLS handshake:")).then_some(())
    });
    // A certificate from the right CA still works.
    let stream = tls_connect(fogg.addr(), pki.client_config(Some("device")))
        .await
        .unwrap();
    let mut client = Client::new(stream, V5);
    assert_eq!(
        client.connect("device", None).await.reason,
        ReasonCode::Success
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_cut_off() {
    let (fogg, pki) = start_tls("handshake_timeout = \"1s\"\n", "");
    // Half a TLS record header, then nothing.
    let mut stalled = TcpStream::connect(fogg.addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stalled, b"\x16\x03")
        .await
        .unwrap();
    // Meanwhile others are served.
    let stream = tls_connect(fogg.addr(), pki.client_config(None))
        .await
        .unwrap();
    let mut client = Client::new(stream, V5);
    assert_eq!(
        client.connect("patient", None).await.reason,
        ReasonCode::Success
    );
    // The stalled one is closed once the bound has passed.
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(WAIT, stalled.read(&mut buf))
        .await
        .expect("closed within the wait");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    eventually("the timeout in the log", WAIT, || {
        fogg.log()
            .contains("TLS handshake not finished within 1s")
            .then_some(())
    });
    client.ping().await;
}

/// The certificate CN replaces the CONNECT username, authenticates the
/// client (anonymous clients are refused here) and is what `%u` matches.
#[tokio::test]
async fn the_certificate_cn_is_the_username_the_acl_sees() {
    let acl = "[auth]\nallow_anonymous = false\n\n\
               [[acl.rules]]\npermission = \"allow\"\naction = \"all\"\ntopic = \"devices/%u/#\"\n\n\
               [[acl.rules]]\npermission = \"deny\"\naction = \"all\"\ntopic = \"#\"\n";
    let (fogg, pki) = start_tls(
        "require_client_cert = true\nuse_identity_as_username = true\n",
        acl,
    );
    let stream = tls_connect(fogg.addr(), pki.client_config(Some("dev1")))
        .await
        .unwrap();
    let mut client = Client::new(stream, V5);
    // The username sent is ignored: the certificate says who this is.
    let ack = client.connect("any-id", Some("mallory")).await;
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    let codes = client
        .subscribe(&["devices/dev1/#", "devices/mallory/#"])
        .await;
    assert_eq!(
        codes,
        [ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized],
        "%u must be the CN"
    );
    assert_eq!(
        client.publish_qos1("devices/dev1/temp", "21").await,
        ReasonCode::Success
    );
    let got = client.expect_publish().await;
    assert_eq!(got.topic, "devices/dev1/temp");
    assert_eq!(
        client.publish_qos1("devices/mallory/temp", "0").await,
        ReasonCode::NotAuthorized
    );
}

#[tokio::test]
async fn rumqttc_with_rustls_publishes_and_receives() {
    use rumqttc::{
        AsyncClient, Event, MqttOptions, Packet as RPacket, QoS, TlsConfiguration, Transport,
    };

    let (fogg, pki) = start_tls("require_client_cert = true\n", "");
    let mut options = MqttOptions::new("rumqttc-tls", "localhost", fogg.port());
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        pki.client_config(Some("rumqttc")),
    )));
    let (client, mut events) = AsyncClient::new(options, 10);
    client
        .subscribe("rust/tls", QoS::AtLeastOnce)
        .await
        .unwrap();
    let received = tokio::time::timeout(WAIT, async {
        let mut published = false;
        loop {
            match events.poll().await.expect("rumqttc event") {
                Event::Incoming(RPacket::SubAck(_)) if !published => {
                    published = true;
                    client
                        .publish("rust/tls", QoS::AtLeastOnce, false, "hello over rustls")
                        .await
                        .unwrap();
                }
                Event::Incoming(RPacket::Publish(p)) => return p,
                _ => {}
            }
        }
    })
    .await
    .expect("the message back in time");
    assert_eq!(&received.payload[..], b"hello over rustls");
}

#[tokio::test]
async fn sighup_reloads_certificates_without_dropping_clients() {
    // Polling off: only the signal may reload.
    let (fogg, pki) = start_tls("cert_reload_interval = \"0s\"\n", "");
    let stream = tls_connect(fogg.addr(), pki.client_config(None))
        .await
        .unwrap();
    let mut live = Client::new(stream, V5);
    assert_eq!(live.connect("live", None).await.reason, ReasonCode::Success);

    // A broken certificate file: the reload fails naming it, nothing changes.
    fs::write(&pki.server.cert, "garbage").unwrap();
    fogg.signal("HUP");
    eventually("the failed reload in the log", WAIT, || {
        fogg.log()
            .contains("TLS certificate reload failed (SIGHUP)")
            .then_some(())
    });
    let log = fogg.log();
    assert!(
        log.contains(&format!(
            "certfile {}: no certificate found",
            pki.server.cert.display()
        )),
        "{log}"
    );
    tls_connect(fogg.addr(), pki.client_config(None))
        .await
        .unwrap();

    // A server certificate from a new CA.
    let new_ca = Ca::new("New CA");
    let issued = new_ca.server();
    fs::write(&pki.server.key, &issued.key_pem).unwrap();
    fs::write(&pki.server.cert, &issued.cert_pem).unwrap();
    fogg.signal("HUP");
    eventually("the reload in the log", WAIT, || {
        fogg.log()
            .contains("TLS certificates reloaded (SIGHUP)")
            .then_some(())
    });
    let stream = tls_connect(fogg.addr(), client_config(&new_ca, None))
        .await
        .expect("the new certificate is served");
    let mut fresh = Client::new(stream, V5);
    assert_eq!(
        fresh.connect("fresh", None).await.reason,
        ReasonCode::Success
    );
    assert!(
        tls_connect(fogg.addr(), pki.client_config(None))
            .await
            .is_err()
    );
    // The client connected before both reloads never noticed.
    live.ping().await;
    assert_eq!(
        live.publish_qos1("still/here", "yes").await,
        ReasonCode::NoMatchingSubscribers
    );
}

#[tokio::test]
async fn changed_certificate_files_are_picked_up_by_themselves() {
    let (fogg, pki) = start_tls("cert_reload_interval = \"200ms\"\n", "");
    let new_ca = Ca::new("New CA");
    let issued = new_ca.server();
    fs::write(&pki.server.key, &issued.key_pem).unwrap();
    fs::write(&pki.server.cert, &issued.cert_pem).unwrap();
    eventually("the reload in the log", WAIT, || {
        fogg.log()
            .contains("TLS certificates reloaded (files changed)")
            .then_some(())
    });
    let stream = tls_connect(fogg.addr(), client_config(&new_ca, None))
        .await
        .unwrap();
    let mut client = Client::new(stream, V5);
    assert_eq!(client.connect("c", None).await.reason, ReasonCode::Success);
}

#[test]
fn check_reads_the_certificate_files() {
    let dir = dir_with(&[]);
    let pki = Pki::new(dir.path());
    let config = format!(
        "[[listeners]]\nname = \"secure\"\nkind = \"wss\"\nbind = \"127.0.0.1:0\"\ncertfile = \"{}\"\nkeyfile = \"{}\"\n",
        pki.server.cert.display(),
        dir.path().join("missing.key").display()
    );
    fs::write(dir.path().join("fogg.toml"), &config).unwrap();
    let out = output_within(
        fogg_command()
            .arg("--config-dir")
            .arg(dir.path())
            .arg("--check"),
        WAIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("fogg.toml: listeners[0].keyfile: listener `secure`: keyfile ")
            && stderr.contains("missing.key: cannot read: "),
        "{stderr}"
    );
    // With the right key the same configuration passes.
    fs::write(
        dir.path().join("fogg.toml"),
        config.replace(
            &dir.path().join("missing.key").display().to_string(),
            &pki.server.key.display().to_string(),
        ),
    )
    .unwrap();
    let out = output_within(
        fogg_command()
            .arg("--config-dir")
            .arg(dir.path())
            .arg("--check"),
        WAIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
