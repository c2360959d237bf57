//! End to end: the real `fogg` binary with `[backends.f] kind = "files"`,
//! `[auth] chain = ["f"]` and `allow_anonymous = false`, driven by
//! `mosquitto_pub` / `mosquitto_sub` over MQTT 3.1.1 and 5.0.
//!
//! The password file is written by `mosquitto_passwd` itself ($7$), plus a
//! VerneMQ-style `$6$` user and a bcrypt user. mosquitto_pub exits with the
//! CONNACK return code when refused (3.1.1: 4 bad user name or password,
//! 5 not authorised; 5.0: 134 = 0x86, 135 = 0x87), which is what is checked.
//!
//! The binary: `FOGG_BIN` when set, else `fogg` next to this test in the
//! cargo target directory (`cargo test --workspace` and `scripts/test.sh`
//! build it first); when it is missing, `cargo build -p fogg --bin fogg`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code fails by panicking"
)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use fogg_auth_common::passwords::{hash_bcrypt, hash_mosquitto_sha512};
use tempfile::TempDir;

const START: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// Tools.

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether mosquitto_pub / _sub / _passwd (and stdbuf) are installed; fails
/// in CI, skips loudly elsewhere.
fn have_tools() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        ["mosquitto_pub", "mosquitto_sub", "stdbuf"]
            .iter()
            .all(|tool| {
                Command::new(tool)
                    .arg("--help")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok()
            })
            && Command::new("mosquitto_passwd")
                .arg("-h")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
    });
    if !ok {
        let message = "mosquitto_pub / mosquitto_sub / mosquitto_passwd: not installed; \
                       run scripts/install-test-deps.sh";
        assert!(!in_ci(), "{message}");
        eprintln!("\n!!!!!!!! SKIPPING: {message} !!!!!!!!\n");
    }
    ok
}

/// The `fogg` binary to test.
fn fogg_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("FOGG_BIN") {
            return PathBuf::from(bin);
        }
        // <target>/<profile>/deps/end_to_end-<hash>  ->  <target>/<profile>/fogg
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
        let bin = profile_dir.join(format!("fogg{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            let target_dir = profile_dir.parent().unwrap();
            let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
            cargo
                .args(["build", "-p", "fogg", "--bin", "fogg"])
                .env("CARGO_TARGET_DIR", target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("run cargo build -p fogg");
            assert!(status.success(), "cargo build -p fogg failed");
        }
        bin
    })
    .clone()
}

/// Run `cmd` within `limit`, collecting its output.
fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdout = reader(child.stdout.take().unwrap());
    let stderr = reader(child.stderr.take().unwrap());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(POLL);
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{cmd:?} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

// ---------------------------------------------------------------------------
// The broker.

/// `fogg --config-dir DIR` on 127.0.0.1:0; killed on drop (its stderr is
/// printed when the test failed).
struct Fogg {
    child: Child,
    dir: TempDir,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Fogg {
    /// Start with the files backend over `passwd` and `acl` (written into
    /// the config dir).
    fn start(passwd: &str, acl: &str) -> Fogg {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("passwd"), passwd).unwrap();
        fs::write(dir.path().join("acl"), acl).unwrap();
        let config = format!(
            r#"[broker]
data_dir = "./data"

[[listeners]]
name = "mqtt"
bind = "127.0.0.1:0"

[storage]
backend = "memory"

[backends.f]
kind = "files"
password_file = {passwd:?}
acl_file = {acl:?}
reload_interval = "100ms"

[auth]
allow_anonymous = false
chain = ["f"]
"#,
            passwd = dir.path().join("passwd").display().to_string(),
            acl = dir.path().join("acl").display().to_string(),
        );
        fs::write(dir.path().join("fogg.toml"), config).unwrap();

        let mut child = Command::new(fogg_binary())
            .arg("--config-dir")
            .arg(dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", fogg_binary().display()));
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.strip_prefix("fogg: listening ") {
                        let _ = tx.send(rest.to_owned());
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let addr = match rx.recv_timeout(START) {
            Ok(rest) => rest
                .split_once(' ')
                .and_then(|(_, addr)| addr.parse().ok())
                .unwrap_or_else(|| panic!("bad listening line {rest:?}")),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "fogg did not start listening (a stale binary without the `files` kind? \
                     rebuild with `cargo build -p fogg`); stderr:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Fogg {
            child,
            dir,
            addr,
            log,
        }
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Fogg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- fogg stderr ----\n{}---------------------",
                self.log.lock().unwrap()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Clients.

#[derive(Debug, Clone, Copy)]
enum Mqtt {
    V311,
    V5,
}

impl Mqtt {
    fn arg(self) -> &'static str {
        match self {
            Mqtt::V311 => "mqttv311",
            Mqtt::V5 => "mqttv5",
        }
    }
}

/// `mosquitto_pub` at QoS 1; returns its exit status and stderr.
fn publish(
    fogg: &Fogg,
    version: Mqtt,
    credentials: Option<(&str, &str)>,
    topic: &str,
    message: &str,
) -> (ExitStatus, String) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &fogg.port(), "-V", version.arg()])
        .args(["-q", "1", "-t", topic, "-m", message]);
    if let Some((user, password)) = credentials {
        cmd.args(["-u", user, "-P", password]);
    }
    let out = output_within(&mut cmd, WAIT);
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `mosquitto_sub -v -C count`, its stdout read line by line.
struct Subscriber {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Subscriber {
    /// Subscribe and wait for the SUBACK.
    fn start(
        fogg: &Fogg,
        version: Mqtt,
        (user, password): (&str, &str),
        filters: &[&str],
        count: usize,
    ) -> Subscriber {
        let mut cmd = Command::new("stdbuf");
        cmd.args(["-oL", "mosquitto_sub", "-d", "-v"])
            .args(["-h", "127.0.0.1", "-p", &fogg.port(), "-V", version.arg()])
            .args(["-u", user, "-P", password, "-q", "1"])
            .args(["-C", &count.to_string(), "-W", "20"]);
        for filter in filters {
            cmd.args(["-t", filter]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto_sub");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sub = Subscriber {
            child,
            lines,
            seen: Vec::new(),
        };
        sub.wait_for("received SUBACK");
        sub
    }

    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "mosquitto_sub printed no {needle:?} within {WAIT:?}:\n{}",
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "mosquitto_sub ended without {needle:?}:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The messages (`topic payload` lines) it printed before exiting
    /// after its count.
    fn messages(mut self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.child.try_wait().unwrap() {
                Some(_) => break,
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "mosquitto_sub did not get its messages:\n{}",
                        self.seen.join("\n")
                    );
                }
                None => thread::sleep(POLL),
            }
        }
        self.seen.extend(self.lines.try_iter());
        // Debug lines start with "Client "; the rest are messages.
        std::mem::take(&mut self.seen)
            .into_iter()
            .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed "))
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The tests.

const ACL: &str = "\
# anonymous clients (none get in: allow_anonymous = false)
topic read public/#

user alice
topic readwrite alice/#
topic read shared/#

user bob
topic write shared/#

user carol
topic read alice/#
";

/// alice's line is written by mosquitto_passwd ($7$); bob's is VerneMQ's
/// `$6$`; carol's is bcrypt.
fn password_file(dir: &Path) -> String {
    let path = dir.join("made-by-mosquitto_passwd");
    let out = output_within(
        Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(&path)
            .args(["alice", "alice-secret"]),
        WAIT,
    );
    assert!(out.status.success(), "mosquitto_passwd: {out:?}");
    let alice = fs::read_to_string(&path).unwrap();
    assert!(alice.starts_with("alice:$7$"), "{alice}");
    format!(
        "{}bob:{}\ncarol:{}\n",
        alice,
        hash_mosquitto_sha512(b"bob-secret"),
        hash_bcrypt(b"carol-secret", 4).unwrap()
    )
}

fn start() -> Fogg {
    let scratch = tempfile::tempdir().unwrap();
    Fogg::start(&password_file(scratch.path()), ACL)
}

#[test]
fn connack_refuses_wrong_passwords_and_accepts_right_ones() {
    if !have_tools() {
        return;
    }
    let fogg = start();
    for version in [Mqtt::V311, Mqtt::V5] {
        let (bad_credentials, not_authorized) = match version {
            Mqtt::V311 => (4, 5),
            Mqtt::V5 => (0x86, 0x87),
        };
        for (user, password) in [
            ("alice", "alice-secret"),
            ("bob", "bob-secret"),
            ("carol", "carol-secret"),
        ] {
            let (status, stderr) = publish(&fogg, version, Some((user, password)), "x", "m");
            assert!(status.success(), "{version:?} {user}: {status} {stderr}");
        }
        for (user, password) in [
            ("alice", "wrong"),
            ("bob", "alice-secret"),
            ("carol", ""),
            ("mallory", "anything"),
        ] {
            let (status, stderr) = publish(&fogg, version, Some((user, password)), "x", "m");
            assert_eq!(
                status.code(),
                Some(bad_credentials),
                "{version:?} {user}/{password}: {stderr}"
            );
            assert!(
                stderr.to_lowercase().contains("bad user name or password"),
                "{stderr}"
            );
        }
        let (status, stderr) = publish(&fogg, version, None, "public/x", "m");
        assert_eq!(
            status.code(),
            Some(not_authorized),
            "{version:?} anonymous: {stderr}"
        );
    }
}

#[test]
fn acl_denied_publishes_and_subscriptions_deliver_nothing() {
    if !have_tools() {
        return;
    }
    let fogg = start();
    for version in [Mqtt::V311, Mqtt::V5] {
        let alice = ("alice", "alice-secret");
        let bob = ("bob", "bob-secret");
        let sub = Subscriber::start(&fogg, version, alice, &["alice/#", "shared/#"], 2);
        let (status, _) = publish(&fogg, version, Some(bob), "shared/news", "one");
        assert!(status.success());
        // bob may not write under alice/: the broker drops it (5.0: PUBACK 0x87).
        let (status, stderr) = publish(&fogg, version, Some(bob), "alice/inbox", "forged");
        assert!(status.success(), "{stderr}");
        if matches!(version, Mqtt::V5) {
            assert!(stderr.contains("Not authorized"), "{stderr}");
        }
        let (status, _) = publish(&fogg, version, Some(bob), "shared/news", "two");
        assert!(status.success());
        assert_eq!(
            sub.messages(),
            ["shared/news one", "shared/news two"],
            "{version:?}"
        );

        // carol may read alice/# but not write it; alice may write her own tree.
        let carol = ("carol", "carol-secret");
        let sub = Subscriber::start(&fogg, version, carol, &["alice/#"], 1);
        publish(&fogg, version, Some(carol), "alice/x", "from carol");
        publish(&fogg, version, Some(alice), "alice/x", "from alice");
        assert_eq!(sub.messages(), ["alice/x from alice"], "{version:?}");
    }
}

#[test]
fn subscriptions_outside_the_acl_are_refused() {
    if !have_tools() {
        return;
    }
    let fogg = start();
    for version in [Mqtt::V311, Mqtt::V5] {
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(["-h", "127.0.0.1", "-p", &fogg.port(), "-V", version.arg()])
            .args(["-u", "bob", "-P", "bob-secret", "-t", "shared/#"])
            .args(["-C", "1", "-W", "5"]);
        let out = output_within(&mut cmd, WAIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("All subscription requests were denied"),
            "{version:?}: bob has write access only: {stderr}"
        );
    }
}

#[test]
fn a_changed_password_file_is_used_without_a_restart() {
    if !have_tools() {
        return;
    }
    let fogg = start();
    let dave = Some(("dave", "dave-secret"));
    let (status, _) = publish(&fogg, Mqtt::V5, dave, "x", "m");
    assert_eq!(status.code(), Some(0x86), "dave is unknown yet");

    let mut passwd = fs::read_to_string(fogg.path("passwd")).unwrap();
    passwd.push_str(&format!("dave:{}\n", hash_mosquitto_sha512(b"dave-secret")));
    // Replace atomically, as editors and config managers do.
    let tmp = fogg.path("passwd.new");
    fs::write(&tmp, passwd).unwrap();
    fs::rename(&tmp, fogg.path("passwd")).unwrap();

    let deadline = Instant::now() + WAIT;
    loop {
        let (status, stderr) = publish(&fogg, Mqtt::V5, dave, "x", "m");
        if status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new user was not accepted within {WAIT:?}: {stderr}"
        );
        thread::sleep(Duration::from_millis(100));
    }

    // A broken change is refused and logged with file and line; the users
    // of the last good file still get in.
    fs::write(fogg.path("passwd"), "# broken\nno-colon-here\n").unwrap();
    let needle = format!(
        "{}:2: expected `username:hash`",
        fogg.path("passwd").display()
    );
    let deadline = Instant::now() + WAIT;
    while !fogg.log.lock().unwrap().contains(&needle) {
        assert!(Instant::now() < deadline, "no log line with {needle:?}");
        thread::sleep(POLL);
    }
    let (status, stderr) = publish(&fogg, Mqtt::V5, dave, "x", "m");
    assert!(status.success(), "{stderr}");
}
