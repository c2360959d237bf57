//! What only the files backend does: re-reading changed files, keeping the
//! last good content when a change does not parse (and saying where), and
//! authorizing anonymous clients from the ACL file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code fails by panicking"
)]

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use fogg_api::{
    AuthDecision, Backend, BackendConfig, BackendFactory, ClientInfo, ConnectInfo, ProtocolVersion,
    PublishDecision, PublishRequest, QoS, SubscribeDecision, SubscribeRequest,
};
use fogg_auth_common::passwords::{hash_bcrypt, hash_mosquitto_pbkdf2, hash_mosquitto_sha512};
use fogg_auth_files::{Files, FilesFactory, FilesSettings};

fn connect_info(username: Option<&str>, password: Option<&str>) -> ConnectInfo {
    ConnectInfo {
        client_id: "dev1".to_owned(),
        username: username.map(str::to_owned),
        password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
        mountpoint: String::new(),
        peer: ([127, 0, 0, 1], 1).into(),
        listener: "mqtt".to_owned(),
        protocol: ProtocolVersion::V3_1_1,
        clean_start: true,
    }
}

fn client(username: Option<&str>) -> ClientInfo {
    ClientInfo {
        client_id: "dev1".to_owned(),
        username: username.map(str::to_owned),
        mountpoint: String::new(),
        peer: ([127, 0, 0, 1], 1).into(),
        protocol: ProtocolVersion::V3_1_1,
    }
}

/// Write `text`, making sure the modification time moves on even on a file
/// system with coarse timestamps.
fn write(path: &Path, text: &str) {
    let before = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    if let Some(before) = before {
        let now = SystemTime::now().max(before + Duration::from_secs(1));
        file.set_modified(now).unwrap();
    }
}

fn build(settings: &str) -> Backend {
    FilesFactory
        .build(&BackendConfig {
            name: "f".to_owned(),
            kind: "files".to_owned(),
            settings: settings.parse().unwrap(),
        })
        .unwrap()
}

fn settings(dir: &Path, extra: &str) -> String {
    format!(
        "password_file = {:?}\nacl_file = {:?}\n{extra}",
        dir.join("passwd").display().to_string(),
        dir.join("acl").display().to_string()
    )
}

async fn authenticate(backend: &Backend, user: &str, password: &str) -> AuthDecision {
    backend
        .authenticator
        .as_ref()
        .unwrap()
        .authenticate(&connect_info(Some(user), Some(password)))
        .await
        .unwrap()
}

fn may_publish(decision: &AuthDecision, user: &str, topic: &str) -> bool {
    let AuthDecision::Allow(grant) = decision else {
        panic!("not allowed: {decision:?}");
    };
    let rules = grant.acl.as_ref().expect("rules from the ACL file");
    let request = PublishRequest {
        topic,
        qos: QoS::AtMostOnce,
        retain: false,
        payload_len: 1,
    };
    matches!(
        rules.check_publish(&client(Some(user)), &request),
        PublishDecision::Allow(_)
    )
}

/// Poll (up to 10 s) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_are_re_read_by_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("passwd"),
        &format!("alice:{}\n", hash_mosquitto_pbkdf2(b"one", 101)),
    );
    write(&dir.path().join("acl"), "user alice\ntopic write a/#\n");
    let backend = build(&settings(dir.path(), "reload_interval = \"50ms\""));

    let first = authenticate(&backend, "alice", "one").await;
    assert!(may_publish(&first, "alice", "a/x"));
    assert!(!may_publish(&first, "alice", "b/x"));

    write(
        &dir.path().join("passwd"),
        &format!(
            "alice:{}\nbob:{}\n",
            hash_bcrypt(b"two", 4).unwrap(),
            hash_mosquitto_sha512(b"bob")
        ),
    );
    write(&dir.path().join("acl"), "user alice\ntopic write b/#\n");
    eventually("the new password", || async {
        matches!(
            authenticate(&backend, "alice", "two").await,
            AuthDecision::Allow(_)
        )
    })
    .await;
    assert_eq!(
        authenticate(&backend, "alice", "one").await,
        AuthDecision::Deny
    );
    assert!(matches!(
        authenticate(&backend, "bob", "bob").await,
        AuthDecision::Allow(_)
    ));
    eventually("the new ACL", || async {
        may_publish(
            &authenticate(&backend, "alice", "two").await,
            "alice",
            "b/x",
        )
    })
    .await;
    assert!(!may_publish(
        &authenticate(&backend, "alice", "two").await,
        "alice",
        "a/x"
    ));
}

/// Collects what `tracing` prints while `f` runs on this thread.
fn logged<R>(f: impl FnOnce() -> R) -> (R, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let sink = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (result, text)
}

fn open(dir: &Path) -> Files {
    let settings = FilesSettings {
        password_file: Some(dir.join("passwd")),
        acl_file: Some(dir.join("acl")),
        reload_interval: Duration::ZERO,
    };
    Files::open("f", &settings).unwrap()
}

fn rules_allow(files: &Files, user: &str, topic: &str) -> bool {
    futures_now(async {
        let info = connect_info(Some(user), Some("pw"));
        let decision = fogg_api::Authenticator::authenticate(files, &info)
            .await
            .unwrap();
        may_publish(&decision, user, topic)
    })
}

/// Run a future to completion on a throwaway current-thread runtime.
fn futures_now<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn a_change_that_does_not_parse_keeps_the_last_good_content_and_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (passwd, acl) = (dir.path().join("passwd"), dir.path().join("acl"));
    write(
        &passwd,
        &format!("u:{}\n", hash_mosquitto_pbkdf2(b"pw", 101)),
    );
    write(&acl, "user u\ntopic write good/#\n");
    let files = open(dir.path());
    assert!(!files.refresh(), "nothing changed");
    assert!(rules_allow(&files, "u", "good/1"));

    // Line 4 is broken: the whole change is refused, the old rules stay.
    write(&acl, "user u\ntopic write new/#\n\ntopic sideways x/#/y\n");
    let (changed, log) = logged(|| files.refresh());
    assert!(!changed);
    let expected = format!("{}:4: topic filter", acl.display());
    assert!(log.contains(&expected), "{log}");
    assert!(log.contains("keeping its previous content"), "{log}");
    assert!(rules_allow(&files, "u", "good/1"));
    assert!(!rules_allow(&files, "u", "new/1"));
    // Logged once per change, not on every check.
    let (_, log) = logged(|| files.refresh());
    assert!(log.is_empty(), "{log}");

    // A broken password file names its line too, and old passwords work.
    write(&passwd, "# users\nu-without-colon\n");
    let (changed, log) = logged(|| files.refresh());
    assert!(!changed);
    assert!(
        log.contains(&format!("{}:2: expected `username:hash`", passwd.display())),
        "{log}"
    );
    assert!(rules_allow(&files, "u", "good/1"));

    // Fixed: both are taken.
    write(&acl, "user u\ntopic write new/#\n");
    write(
        &passwd,
        &format!("u:{}\n", hash_mosquitto_pbkdf2(b"pw", 101)),
    );
    assert!(files.refresh());
    assert!(rules_allow(&files, "u", "new/1"));
    assert!(!rules_allow(&files, "u", "good/1"));
}

#[test]
fn a_vanished_file_keeps_its_content_and_a_late_file_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let (passwd, acl) = (dir.path().join("passwd"), dir.path().join("acl"));
    // Neither exists at start: nobody matches, nothing fails.
    let (files, log) = logged(|| open(dir.path()));
    assert!(log.contains("does not exist (yet)"), "{log}");
    let info = connect_info(Some("u"), Some("pw"));
    let unknown = futures_now(fogg_api::Authenticator::authenticate(&files, &info)).unwrap();
    assert_eq!(unknown, AuthDecision::Next);

    write(
        &passwd,
        &format!("u:{}\n", hash_mosquitto_pbkdf2(b"pw", 101)),
    );
    write(&acl, "user u\ntopic write t/#\n");
    assert!(files.refresh());
    assert!(rules_allow(&files, "u", "t/1"));

    std::fs::remove_file(&acl).unwrap();
    let (changed, log) = logged(|| files.refresh());
    assert!(!changed);
    assert!(log.contains("disappeared"), "{log}");
    assert!(rules_allow(&files, "u", "t/1"));
}

#[test]
fn unknown_hashes_are_logged_at_load_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("passwd"),
        &format!("ok:{}\nodd:$9$what\n", hash_mosquitto_pbkdf2(b"pw", 101)),
    );
    let (files, log) = logged(|| open(dir.path()));
    assert!(log.contains("line=2"), "{log}");
    assert!(log.contains("odd"), "{log}");
    assert!(log.contains("unknown password hash format"), "{log}");
    let (decision, log) = logged(|| {
        futures_now(fogg_api::Authenticator::authenticate(
            &files,
            &connect_info(Some("odd"), Some("$9$what")),
        ))
    });
    assert_eq!(decision.unwrap(), AuthDecision::Deny);
    assert!(log.contains("CONNECT denied"), "{log}");
}

#[tokio::test]
async fn anonymous_clients_are_authorized_from_the_lines_before_the_first_user() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("passwd"), "");
    write(
        &dir.path().join("acl"),
        "topic read public/#\ntopic write public/anon\npattern write clients/%c/status\n\
         pattern read users/%u/#\nuser alice\ntopic readwrite home/alice/#\n",
    );
    let backend = build(&settings(dir.path(), ""));

    // Never authenticated here: the broker's allow_anonymous decides.
    let anonymous = connect_info(None, None);
    assert_eq!(
        backend
            .authenticator
            .as_ref()
            .unwrap()
            .authenticate(&anonymous)
            .await
            .unwrap(),
        AuthDecision::Next
    );

    let authorizer = backend.authorizer.as_ref().unwrap();
    let publish = |topic| PublishRequest {
        topic,
        qos: QoS::AtLeastOnce,
        retain: false,
        payload_len: 4,
    };
    let subscribe = |filter| SubscribeRequest {
        filter,
        qos: QoS::AtLeastOnce,
    };
    let anon = client(None);
    for (topic, expected) in [
        ("public/anon", PublishDecision::Allow(None)),
        ("clients/dev1/status", PublishDecision::Allow(None)),
        ("public/other", PublishDecision::Next),
        ("home/alice/x", PublishDecision::Next),
    ] {
        assert_eq!(
            authorizer
                .authorize_publish(&anon, &publish(topic))
                .await
                .unwrap(),
            expected,
            "anonymous publish {topic}"
        );
    }
    assert_eq!(
        authorizer
            .authorize_subscribe(&anon, &subscribe("public/#"))
            .await
            .unwrap(),
        SubscribeDecision::allow()
    );
    // %u never matches without a username.
    assert_eq!(
        authorizer
            .authorize_subscribe(&anon, &subscribe("users/%u/#"))
            .await
            .unwrap(),
        SubscribeDecision::Next
    );

    // A user authenticated elsewhere, without rules: its section + patterns.
    let alice = client(Some("alice"));
    assert_eq!(
        authorizer
            .authorize_publish(&alice, &publish("home/alice/door"))
            .await
            .unwrap(),
        PublishDecision::Allow(None)
    );
    assert_eq!(
        authorizer
            .authorize_publish(&alice, &publish("public/anon"))
            .await
            .unwrap(),
        PublishDecision::Next,
        "the anonymous lines are not alice's"
    );
    let zed = client(Some("zed"));
    assert_eq!(
        authorizer
            .authorize_subscribe(&zed, &subscribe("users/zed/inbox"))
            .await
            .unwrap(),
        SubscribeDecision::allow()
    );
    assert_eq!(
        authorizer
            .authorize_subscribe(&zed, &subscribe("home/alice/#"))
            .await
            .unwrap(),
        SubscribeDecision::Next
    );
}

#[tokio::test]
async fn without_an_acl_file_an_allowed_client_gets_no_rules() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    write(&passwd, &format!("u:{}\n", hash_mosquitto_sha512(b"pw")));
    let backend = build(&format!(
        "password_file = {:?}",
        passwd.display().to_string()
    ));
    assert!(backend.authorizer.is_none());
    assert_eq!(
        authenticate(&backend, "u", "pw").await,
        AuthDecision::allow(),
        "no rules: the broker's static rules and other authorizers decide"
    );
}
