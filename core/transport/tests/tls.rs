//! TLS: certificates from files, client certificates, identities, the
//! handshake bound, and reloading without dropping live connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{Server, echo, round_trip, tls_connect};
use fogg_transport::test_pki::{Ca, client_config, client_config_tls12};
use fogg_transport::{
    Acceptor, IdentityField, Kind, Settings, Stage, TlsSettings, TlsVersion, TransportError,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A `tls` listener with `ca`'s server certificate in `dir`.
fn tls_settings(dir: &Path, ca: &Ca) -> Settings {
    let files = ca.server().write(dir, "server");
    Settings {
        kind: Kind::Tls,
        tls: Some(TlsSettings::new(files.cert, files.key)),
        ..Settings::tcp("test")
    }
}

/// Same, verifying client certificates against `ca` (required or not).
fn mtls_settings(dir: &Path, ca: &Ca, required: bool) -> Settings {
    let mut settings = tls_settings(dir, ca);
    let tls = settings.tls.as_mut().unwrap();
    tls.cafile = Some(ca.write(dir, "ca.crt"));
    tls.require_client_cert = required;
    settings
}

#[tokio::test]
async fn a_trusted_server_certificate_carries_bytes_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let mut server = Server::start(tls_settings(dir.path(), &ca)).await;
    let mut client = tls_connect(server.addr, client_config(&ca, None))
        .await
        .unwrap();
    let (stream, meta) = server.next_ok().await;
    let tls = meta.tls.clone().expect("TLS info");
    assert_eq!(tls.version, "TLSv1.3");
    assert_eq!(tls.sni.as_deref(), Some("localhost"));
    assert!(!tls.client_cert);
    assert_eq!(meta.identity(), None);
    echo(stream);
    round_trip(&mut client, b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00").await;
}

#[tokio::test]
async fn tls_1_2_is_served_unless_refused_by_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let tls12_only = || client_config_tls12(&ca);
    let mut server = Server::start(tls_settings(dir.path(), &ca)).await;
    let mut client = tls_connect(server.addr, tls12_only()).await.unwrap();
    let (stream, meta) = server.next_ok().await;
    assert_eq!(meta.tls.as_ref().unwrap().version, "TLSv1.2");
    echo(stream);
    round_trip(&mut client, b"hello").await;

    let mut settings = tls_settings(dir.path(), &ca);
    settings.tls.as_mut().unwrap().min_version = TlsVersion::Tls13;
    let mut server = Server::start(settings).await;
    assert!(tls_connect(server.addr, tls12_only()).await.is_err());
    let e = server.next_err().await;
    assert!(
        matches!(
            e,
            TransportError::Handshake {
                stage: Stage::Tls,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_client_that_does_not_know_the_ca_refuses_and_the_server_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let other = Ca::new("Other CA");
    let mut server = Server::start(tls_settings(dir.path(), &ca)).await;
    let e = tls_connect(server.addr, client_config(&other, None))
        .await
        .expect_err("unknown CA");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    let e = server.next_err().await.to_string();
    assert!(e.starts_with("TLS handshake: "), "{e}");
    assert!(e.contains("UnknownCA") || e.contains("alert"), "{e}");
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused_by_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let files = ca.expired_server().write(dir.path(), "old");
    let settings = Settings {
        kind: Kind::Tls,
        tls: Some(TlsSettings::new(files.cert, files.key)),
        ..Settings::tcp("test")
    };
    let mut server = Server::start(settings).await;
    let e = tls_connect(server.addr, client_config(&ca, None))
        .await
        .expect_err("expired");
    assert!(e.to_string().contains("certificate expired"), "{e}");
    server.next_err().await;
}

#[tokio::test]
async fn required_client_certificates_must_come_from_the_ca_and_be_valid() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let other = Ca::new("Other CA");
    let mut server = Server::start(mtls_settings(dir.path(), &ca, true)).await;

    // The good one: its CN is the identity.
    let good = ca.client("device-1");
    let mut client = tls_connect(server.addr, client_config(&ca, Some(&good)))
        .await
        .unwrap();
    let (stream, meta) = server.next_ok().await;
    assert_eq!(meta.identity(), Some("device-1"));
    assert!(meta.tls.as_ref().unwrap().client_cert);
    echo(stream);
    round_trip(&mut client, b"ok").await;

    // None, another CA's, an expired one: refused, each with a reason.
    let foreign = other.client("intruder");
    let expired = ca.expired_client("old-device");
    for (what, cert) in [
        ("none", None),
        ("foreign", Some(&foreign)),
        ("expired", Some(&expired)),
    ] {
        // TLS 1.3 clients learn of the refusal on their first read.
        if let Ok(mut c) = tls_connect(server.addr, client_config(&ca, cert)).await {
            let _ = c.write_all(b"x").await;
            let mut buf = [0u8; 1];
            let read = tokio::io::AsyncReadExt::read(&mut c, &mut buf).await;
            assert!(!matches!(read, Ok(1)), "{what}: connection still usable");
        }
        let e = server.next_err().await.to_string();
        assert!(e.starts_with("TLS handshake: "), "{what}: {e}");
    }
}

#[tokio::test]
async fn optional_client_certificates_give_an_identity_when_sent() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let mut server = Server::start(mtls_settings(dir.path(), &ca, false)).await;
    let _anonymous = tls_connect(server.addr, client_config(&ca, None))
        .await
        .unwrap();
    let (_, meta) = server.next_ok().await;
    assert_eq!(meta.identity(), None);
    let cert = ca.client("sensor-9");
    let _with = tls_connect(server.addr, client_config(&ca, Some(&cert)))
        .await
        .unwrap();
    let (_, meta) = server.next_ok().await;
    assert_eq!(meta.identity(), Some("sensor-9"));
}

#[tokio::test]
async fn the_identity_can_be_a_san_entry() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let cert = ca.client_with_sans(
        "cn-name",
        &[
            "dns:dev.example.com",
            "email:dev@example.com",
            "uri:spiffe://example.com/dev",
        ],
    );
    for (field, want) in [
        (IdentityField::Cn, Some("cn-name")),
        (IdentityField::SanDns, Some("dev.example.com")),
        (IdentityField::SanEmail, Some("dev@example.com")),
        (IdentityField::SanUri, Some("spiffe://example.com/dev")),
    ] {
        let mut settings = mtls_settings(dir.path(), &ca, true);
        settings.tls.as_mut().unwrap().identity_field = field;
        let mut server = Server::start(settings).await;
        let _c = tls_connect(server.addr, client_config(&ca, Some(&cert)))
            .await
            .unwrap();
        let (_, meta) = server.next_ok().await;
        assert_eq!(meta.identity(), want, "{field}");
    }
    // A field the certificate lacks: connected, no identity.
    let plain = ca.client("only-cn");
    let mut settings = mtls_settings(dir.path(), &ca, true);
    settings.tls.as_mut().unwrap().identity_field = IdentityField::SanUri;
    let mut server = Server::start(settings).await;
    let _c = tls_connect(server.addr, client_config(&ca, Some(&plain)))
        .await
        .unwrap();
    let (_, meta) = server.next_ok().await;
    assert_eq!(meta.identity(), None);
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let mut settings = tls_settings(dir.path(), &ca);
    settings.handshake_timeout = Duration::from_millis(300);
    let mut server = Server::start(settings).await;
    // Half a ClientHello record header, then silence.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(b"\x16\x03\x01").await.unwrap();
    let e = server.next_err().await;
    assert!(
        matches!(
            e,
            TransportError::Timeout {
                stage: Stage::Tls,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.to_string(), "TLS handshake not finished within 300ms");
    // Others are still served.
    let mut client = tls_connect(server.addr, client_config(&ca, None))
        .await
        .unwrap();
    let (stream, _) = server.next_ok().await;
    echo(stream);
    round_trip(&mut client, b"still here").await;
}

#[tokio::test]
async fn reloading_swaps_certificates_for_new_connections_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Old CA");
    let settings = tls_settings(dir.path(), &ca);
    let tls = settings.tls.clone().unwrap();
    let mut server = Server::start(settings).await;
    let mut live = tls_connect(server.addr, client_config(&ca, None))
        .await
        .unwrap();
    let (stream, _) = server.next_ok().await;
    echo(stream);
    round_trip(&mut live, b"before").await;
    assert!(server.acceptor.reload_if_changed().is_none());

    // A broken certfile: the reload fails naming it, the old one stays.
    fs::write(&tls.certfile, "not a certificate").unwrap();
    let e = server.acceptor.reload().expect_err("broken file");
    assert_eq!(
        e.to_string(),
        format!(
            "certfile {}: no certificate found (expected PEM \"-----BEGIN CERTIFICATE-----\" sections)",
            tls.certfile.display()
        )
    );
    let _c = tls_connect(server.addr, client_config(&ca, None))
        .await
        .unwrap();
    server.next_ok().await;

    // A new certificate from another CA: new clients get it, the live
    // connection goes on with the old session.
    let new_ca = Ca::new("New CA");
    let issued = new_ca.server();
    fs::write(&tls.keyfile, &issued.key_pem).unwrap();
    fs::write(&tls.certfile, &issued.cert_pem).unwrap();
    assert!(matches!(server.acceptor.reload_if_changed(), Some(Ok(()))));
    let _c = tls_connect(server.addr, client_config(&new_ca, None))
        .await
        .unwrap();
    server.next_ok().await;
    assert!(
        tls_connect(server.addr, client_config(&ca, None))
            .await
            .is_err()
    );
    server.next_err().await;
    round_trip(&mut live, b"after").await;
}

#[test]
fn configuration_errors_name_the_key_the_file_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let good = ca.server().write(dir.path(), "good");
    let other = ca.server().write(dir.path(), "other");
    let empty = dir.path().join("empty.pem");
    fs::write(&empty, "").unwrap();
    let encrypted = dir.path().join("enc.key");
    fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    let error = |tls: TlsSettings| {
        Acceptor::new(Settings {
            kind: Kind::Tls,
            tls: Some(tls),
            ..Settings::tcp("test")
        })
        .expect_err("refused")
        .to_string()
    };
    let e = error(TlsSettings::new(&missing, &good.key));
    assert!(
        e.starts_with(&format!("certfile {}: cannot read: ", missing.display())),
        "{e}"
    );
    let e = error(TlsSettings::new(&empty, &good.key));
    assert!(e.contains("empty.pem: no certificate found"), "{e}");
    let e = error(TlsSettings::new(&good.cert, &empty));
    assert!(
        e.starts_with(&format!(
            "keyfile {}: no private key found",
            empty.display()
        )),
        "{e}"
    );
    let e = error(TlsSettings::new(&good.cert, &encrypted));
    assert!(e.contains("the private key is encrypted"), "{e}");
    let e = error(TlsSettings::new(&good.cert, &other.key));
    assert!(e.contains("does not match the certificate in"), "{e}");
    let mut tls = TlsSettings::new(&good.cert, &good.key);
    tls.require_client_cert = true;
    let e = error(tls);
    assert!(
        e.starts_with("cafile: require_client_cert = true needs cafile"),
        "{e}"
    );
    let mut tls = TlsSettings::new(&good.cert, &good.key);
    tls.cafile = Some(empty.clone());
    let e = error(tls);
    assert!(e.starts_with("cafile "), "{e}");
    let e = Acceptor::new(Settings {
        kind: Kind::Wss,
        ..Settings::tcp("test")
    })
    .expect_err("no files")
    .to_string();
    assert_eq!(e, "certfile: a `wss` listener needs certfile and keyfile");
}

/// PKCS#1 RSA and SEC1 EC keys as `openssl` writes them ("traditional" PEM).
#[tokio::test]
async fn rsa_and_ec_keys_in_every_pem_flavour_load() {
    let have_openssl = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_openssl {
        eprintln!("SKIPPING: openssl not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, genkey) in [
        (
            "rsa",
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
        ),
        (
            "ec",
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
        ),
    ] {
        let pkcs8 = dir.path().join(format!("{name}.p8.key"));
        let traditional = dir.path().join(format!("{name}.trad.key"));
        let cert = dir.path().join(format!("{name}.crt"));
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let mut args = genkey.clone();
        args.extend(["-out", pkcs8.to_str().unwrap()]);
        run(&args);
        run(&[
            "pkey",
            "-in",
            pkcs8.to_str().unwrap(),
            "-traditional",
            "-out",
            traditional.to_str().unwrap(),
        ]);
        run(&[
            "req",
            "-x509",
            "-new",
            "-key",
            pkcs8.to_str().unwrap(),
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-out",
            cert.to_str().unwrap(),
        ]);
        let text = fs::read_to_string(&traditional).unwrap();
        let marker = if name == "rsa" {
            "BEGIN RSA PRIVATE KEY"
        } else {
            "BEGIN EC PRIVATE KEY"
        };
        assert!(text.contains(marker), "{text}");
        for key in [&pkcs8, &traditional] {
            Acceptor::new(Settings {
                kind: Kind::Tls,
                tls: Some(TlsSettings::new(&cert, key)),
                ..Settings::tcp("test")
            })
            .unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        }
    }
}
