//! TLS (the driver's rustls) and SCRAM credentials in the URL, against a
//! MongoDB-wire server started here with TLS and authentication required:
//! `secantusd-rs --tls-cert-file ... --auth` (fogg-testcontainers starts its
//! servers without TLS). Certificates are made per run. Skipped, loudly,
//! where secantusd-rs is not installed (a machine with `mongod` instead).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code fails by panicking"
)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{NAME, Who, authenticate, build};
use fogg_api::{AuthDecision, ErrorKind};
use fogg_auth_common::passwords;
use mongodb::bson::{Document, doc};
use mongodb::options::ClientOptions;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

const DB_USER: &str = "fogg";
const DB_PASSWORD: &str = "db-s3cret-pw";

fn secantusd() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("secantusd-rs"))
        .find(|p| p.is_file())
}

/// A CA and a server certificate for 127.0.0.1 / localhost, as PEM files.
fn certificates(dir: &Path) -> PathBuf {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fogg test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    dir.join("ca.pem")
}

/// secantusd-rs with TLS and `--auth`, killed on drop.
struct TlsServer {
    child: Child,
    port: u16,
    ca: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsServer {
    fn start(binary: &Path) -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let ca = certificates(dir.path());
        std::fs::write(dir.path().join("secantusd.toml"), "").unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(binary)
            .arg("--config")
            .arg(dir.path().join("secantusd.toml"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--storage-path")
            .arg(dir.path().join("data"))
            .args(["--cache-size", "64M", "--log-file-max", "16MB", "--auth"])
            .arg("--tls-cert-file")
            .arg(dir.path().join("server.pem"))
            .arg("--tls-key-file")
            .arg(dir.path().join("server.key"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn secantusd-rs");
        TlsServer {
            child,
            port,
            ca,
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn url(&self, credentials: Option<(&str, &str)>, query: &str) -> String {
        let userinfo = credentials.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
        format!("mongodb://{userinfo}127.0.0.1:{}/?{query}", self.port)
    }

    fn tls_query(&self) -> String {
        format!("tls=true&tlsCAFile={}", self.ca.display())
    }

    async fn client(&self, url: &str) -> mongodb::Client {
        let mut options = ClientOptions::parse(url).await.unwrap();
        options.server_selection_timeout = Some(Duration::from_secs(2));
        mongodb::Client::with_options(options).unwrap()
    }

    /// Wait until TLS answers, then create the first user (mongod's
    /// localhost exception), then seed as that user.
    async fn prepare(&self, documents: Vec<Document>) {
        let anonymous = self.client(&self.url(None, &self.tls_query())).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let created = anonymous
                .database("admin")
                .run_command(doc! {
                    "createUser": DB_USER, "pwd": DB_PASSWORD,
                    "roles": [{"role": "root", "db": "admin"}],
                })
                .await;
            match created {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("waiting for secantusd-rs: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("createUser: {e}\n{}", self.log()),
            }
        }
        let query = format!("{}&authSource=admin", self.tls_query());
        let admin = self
            .client(&self.url(Some((DB_USER, DB_PASSWORD)), &query))
            .await;
        admin
            .database("auth")
            .collection::<Document>("vmq_acl_auth")
            .insert_many(documents)
            .await
            .expect("seed as the created user");
    }

    fn settings(&self, url: String) -> toml::Table {
        let mut table = toml::Table::new();
        table.insert("url".into(), url.into());
        table.insert("database".into(), "auth".into());
        table
    }
}

#[tokio::test]
async fn tls_and_scram_credentials_in_the_url() {
    let Some(binary) = secantusd() else {
        eprintln!("SKIPPED: tls_and_scram_credentials_in_the_url: secantusd-rs is not installed");
        return;
    };
    let server = TlsServer::start(&binary);
    server
        .prepare(vec![doc! {
            "mountpoint": "", "client_id": "*", "username": "alice",
            "passhash": passwords::hash_bcrypt(b"pw", 4).unwrap(),
            "publish_acl": [{"pattern": "a/#"}],
        }])
        .await;
    let query = format!("{}&authSource=admin", server.tls_query());
    let alice = Who::new("alice", "pw");

    // TLS verified against the CA, SCRAM with the URL's credentials.
    let good = build(server.settings(server.url(Some((DB_USER, DB_PASSWORD)), &query))).unwrap();
    assert!(matches!(
        authenticate(&good, &alice).await,
        Ok(AuthDecision::Allow(_))
    ));
    assert_eq!(
        authenticate(&good, &Who::new("alice", "wrong"))
            .await
            .unwrap(),
        AuthDecision::Deny
    );

    // Every way of not getting through is an outage, never a denial, and
    // never shows the database password.
    let cases = [
        (
            "wrong database password",
            server.url(Some((DB_USER, "not-the-pw-123")), &query),
        ),
        ("no credentials", server.url(None, &server.tls_query())),
        (
            "certificate not trusted",
            server.url(Some((DB_USER, DB_PASSWORD)), "tls=true&authSource=admin"),
        ),
        (
            "no TLS",
            server.url(Some((DB_USER, DB_PASSWORD)), "authSource=admin"),
        ),
    ];
    for (what, url) in cases {
        let mut settings = server.settings(url);
        settings.insert("server_selection_timeout".into(), "1s".into());
        let backend = build(settings).unwrap();
        let started = Instant::now();
        let e = authenticate(&backend, &alice).await.unwrap_err();
        eprintln!("{what}: {:?}: {e}", started.elapsed());
        assert!(
            matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
            "{what}: {e}"
        );
        assert!(e.to_string().contains(&format!("`{NAME}`")));
        let shown = format!("{e} {e:?}");
        for secret in [DB_PASSWORD, "not-the-pw-123"] {
            assert!(!shown.contains(secret), "{what}: {shown}");
        }
    }
}
