//! The shared auth behavior suite against the files backend. Its "real
//! server" is the file system: each case gets a temporary directory, the
//! fixture writes the password and ACL files there, and the suite builds the
//! backend through `FilesFactory` from a settings table, as the broker does.

#![allow(clippy::expect_used, reason = "test code fails by panicking")]

use std::fmt::Write as _;
use std::sync::Mutex;

use fogg_api::BackendFactory;
use fogg_auth_behavior::{
    AuthFixture, Features, HashMethod, Pbkdf2Digest, RawPassword, RawUser, Scheme, TestUser,
};
use fogg_auth_common::passwords;
use fogg_auth_files::FilesFactory;
use tempfile::TempDir;

/// One stored user: its password-file line and its ACL-file section.
struct Stored {
    username: String,
    hash: String,
    publish: Vec<String>,
    subscribe: Vec<String>,
}

struct FilesFixture {
    dir: TempDir,
    users: Mutex<Vec<Stored>>,
}

impl FilesFixture {
    fn new() -> FilesFixture {
        FilesFixture {
            dir: tempfile::tempdir().expect("temp dir"),
            users: Mutex::new(Vec::new()),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Write both files from every stored user.
    fn store(&self, user: Stored) {
        let mut users = self.users.lock().expect("lock");
        users.retain(|u| u.username != user.username);
        users.push(user);
        let mut passwd = String::from("# written by the behavior fixture\n");
        let mut acl = String::from("# written by the behavior fixture\n");
        for u in users.iter() {
            writeln!(passwd, "{}:{}", u.username, u.hash).expect("write");
            writeln!(acl, "\nuser {}", u.username).expect("write");
            for p in &u.publish {
                writeln!(acl, "topic write {p}").expect("write");
            }
            for p in &u.subscribe {
                writeln!(acl, "topic read {p}").expect("write");
            }
        }
        std::fs::write(self.path("passwd"), passwd).expect("write passwd");
        std::fs::write(self.path("acl"), acl).expect("write acl");
    }
}

impl AuthFixture for FilesFixture {
    fn factory(&self) -> Box<dyn BackendFactory> {
        Box::new(FilesFactory)
    }

    fn settings(&self, _hash: &HashMethod) -> toml::Table {
        let mut table = toml::Table::new();
        table.insert("password_file".into(), self.path("passwd").into());
        table.insert("acl_file".into(), self.path("acl").into());
        table
    }

    fn features(&self) -> Features {
        Features {
            // $7$ first: the default of most cases (fast at 101 iterations).
            hash_methods: vec![
                HashMethod::Broker(Scheme::MosquittoPbkdf2),
                HashMethod::Broker(Scheme::MosquittoSha512),
                HashMethod::Broker(Scheme::Bcrypt),
                HashMethod::Broker(Scheme::Sha512Crypt),
                HashMethod::Broker(Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha512)),
                HashMethod::Broker(Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha256)),
                HashMethod::Broker(Scheme::Argon2),
            ],
            client_ids: false,
            mountpoints: false,
            acl_limits: false,
            acl_modifiers: false,
            raw_acl: false,
            users_without_password: true,
        }
    }

    async fn seed_user(&self, user: &TestUser) {
        assert_eq!(user.client_id, "*", "files have no client-id rows");
        let publish = user
            .publish_acl
            .iter()
            .map(|p| {
                assert!(p.is_plain(), "files ACLs have patterns only: {p:?}");
                p.pattern.clone()
            })
            .collect();
        let subscribe = user
            .subscribe_acl
            .iter()
            .map(|s| {
                assert!(s.is_plain(), "files ACLs have patterns only: {s:?}");
                s.pattern.clone()
            })
            .collect();
        self.store(Stored {
            username: user.username.clone(),
            hash: user.stored_hash().unwrap_or_default(),
            publish,
            subscribe,
        });
    }

    async fn seed_raw(&self, user: &RawUser) {
        assert_eq!(user.client_id, "*", "files have no client-id rows");
        assert!(
            user.publish_acl.is_none() && user.subscribe_acl.is_none(),
            "files have no ACL text"
        );
        let hash = match &user.password {
            RawPassword::Stored(s) => s.clone(),
            RawPassword::Plain(p) => match &user.hash {
                HashMethod::Broker(scheme) => {
                    passwords::hash_for_tests(*scheme, p.as_bytes()).expect("hash")
                }
                HashMethod::Database(name) => panic!("files have no database method {name}"),
            },
        };
        self.store(Stored {
            username: user.username.clone(),
            hash,
            publish: Vec::new(),
            subscribe: Vec::new(),
        });
    }
}

async fn fixture() -> FilesFixture {
    FilesFixture::new()
}

fogg_auth_behavior::auth_behavior_tests!(fixture());

/// Every case in sequence on one directory: the cases do not depend on a
/// fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_cases_on_one_directory() {
    let fixture = FilesFixture::new();
    fogg_auth_behavior::run_all(&fixture).await;
    assert_eq!(fogg_auth_behavior::CASES.len(), 21);
}
