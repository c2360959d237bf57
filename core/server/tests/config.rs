//! The real `fogg` binary against configuration directories: `--check`
//! results and messages (file + key + reason), and one start / SIGTERM cycle.

// Helpers outside #[test] functions panic on purpose: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

fn fogg() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fogg"));
    // The messages under test must not depend on the caller's log filter.
    cmd.env_remove("RUST_LOG");
    cmd
}

fn repo_conf_d() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf.d")
}

fn dir_with(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn check(dir: &Path) -> Output {
    let mut command = fogg();
    // The default data_dir is ./data: keep anything relative inside the temp dir.
    if dir.is_dir() {
        command.current_dir(dir);
    }
    command
        .arg("--config-dir")
        .arg(dir)
        .arg("--check")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "expected success, got {:?}\nstderr:\n{}",
        out.status,
        stderr(out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("configuration OK"), "stdout: {stdout}");
}

/// Exit status 2 and every `needle` on stderr.
#[track_caller]
fn assert_config_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    for needle in needles {
        assert!(err.contains(needle), "missing {needle:?} in stderr:\n{err}");
    }
}

/// `dir/name` as fogg prints it.
fn path_in(dir: &TempDir, name: &str) -> String {
    dir.path().join(name).display().to_string()
}

#[test]
fn built_in_defaults_pass_when_there_is_no_conf_d() {
    let cwd = tempfile::tempdir().unwrap();
    let out = fogg()
        .arg("--check")
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("built-in defaults"));
}

#[test]
fn without_config_dir_conf_d_of_the_working_directory_is_loaded() {
    let cwd = tempfile::tempdir().unwrap();
    fs::create_dir(cwd.path().join("conf.d")).unwrap();
    fs::write(cwd.path().join("conf.d/bad.toml"), "[broker]\nnope = 1\n").unwrap();
    let out = fogg()
        .arg("--check")
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_config_error(&out, &["conf.d/bad.toml: broker.nope: unknown key `nope`"]);
}

#[test]
fn the_repository_conf_d_passes() {
    assert_ok(&check(&repo_conf_d()));
}

#[test]
fn every_example_passes_alone_and_on_top_of_the_defaults() {
    let examples = repo_conf_d().join("examples");
    let mut seen = 0;
    for entry in fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        seen += 1;
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = fs::read_to_string(&path).unwrap();

        let alone = dir_with(&[]);
        let text_here = with_example_certificates(&text, alone.path());
        fs::write(alone.path().join(&name), &text_here).unwrap();
        assert_ok(&check(alone.path()));

        let defaults = fs::read_to_string(repo_conf_d().join("fogg.toml")).unwrap();
        let layered = dir_with(&[("fogg.toml", &defaults)]);
        let text_here = with_example_certificates(&text, layered.path());
        fs::write(layered.path().join(format!("50-{name}")), &text_here).unwrap();
        assert_ok(&check(layered.path()));
    }
    assert!(
        seen >= 2,
        "expected the shipped examples in {}",
        examples.display()
    );
}

/// Where the TLS examples expect their certificates.
const EXAMPLE_TLS_DIR: &str = "/etc/fogg/tls/";

/// `--check` reads certificate files: give the examples real ones (made
/// now, in `dir`) at the paths they name.
fn with_example_certificates(text: &str, dir: &Path) -> String {
    if !text.contains(EXAMPLE_TLS_DIR) {
        return text.to_owned();
    }
    let tls = dir.join("tls");
    fs::create_dir_all(&tls).unwrap();
    let ca = fogg_transport::test_pki::Ca::new("Example CA");
    ca.write(&tls, "ca.crt");
    ca.server().write(&tls, "server");
    text.replace(EXAMPLE_TLS_DIR, &format!("{}/", tls.display()))
}

#[test]
fn examples_beyond_loopback_refuse_anonymous_clients() {
    let examples = repo_conf_d().join("examples");
    for entry in fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let table: toml::Table = text.parse().unwrap();
        let public = table
            .get("listeners")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
            .filter_map(|l| l.get("bind").and_then(|b| b.as_str()))
            .any(|bind| !bind.parse::<SocketAddr>().unwrap().ip().is_loopback());
        if public {
            let anonymous = table
                .get("auth")
                .and_then(|a| a.get("allow_anonymous"))
                .and_then(|a| a.as_bool());
            assert_eq!(
                anonymous,
                Some(false),
                "{} listens beyond loopback",
                path.display()
            );
        }
    }
}

#[test]
fn unknown_key() {
    let dir = dir_with(&[("10-broker.toml", "[broker]\nmax_pakcet_size = 1024\n")]);
    assert_config_error(
        &check(dir.path()),
        &[
            &path_in(&dir, "10-broker.toml"),
            "broker.max_pakcet_size: unknown key `max_pakcet_size`; expected one of:",
            "max_packet_size",
        ],
    );
}

#[test]
fn wrong_type() {
    let dir = dir_with(&[("a.toml", "[auth]\nallow_anonymous = \"yes\"\n")]);
    assert_config_error(
        &check(dir.path()),
        &[&format!(
            "{}: auth.allow_anonymous: wrong type: found string \"yes\", expected a boolean",
            path_in(&dir, "a.toml")
        )],
    );
}

#[test]
fn bad_bind_address() {
    let dir = dir_with(&[(
        "l.toml",
        "[[listeners]]\nname = \"mqtt\"\nbind = \"nonsense\"\n",
    )]);
    assert_config_error(
        &check(dir.path()),
        &[&format!(
            "{}: listeners[0].bind: invalid socket address syntax",
            path_in(&dir, "l.toml")
        )],
    );
}

#[test]
fn toml_syntax_error() {
    let dir = dir_with(&[("s.toml", "[broker]\nreceive_maximum = = 5\n")]);
    assert_config_error(
        &check(dir.path()),
        &[
            &format!(
                "{}: line 2, column 19: TOML syntax error",
                path_in(&dir, "s.toml")
            ),
            "receive_maximum = = 5",
        ],
    );
}

#[test]
fn a_directory_named_like_a_config_file() {
    let dir = dir_with(&[]);
    fs::create_dir(dir.path().join("x.toml")).unwrap();
    assert_config_error(
        &check(dir.path()),
        &[&format!(
            "{}: cannot read the configuration file: is a directory",
            path_in(&dir, "x.toml")
        )],
    );
}

#[cfg(unix)]
#[test]
fn a_dangling_symlink() {
    let dir = dir_with(&[]);
    std::os::unix::fs::symlink(dir.path().join("missing"), dir.path().join("y.toml")).unwrap();
    assert_config_error(
        &check(dir.path()),
        &[&format!(
            "{}: cannot read the configuration file: is a symbolic link to a missing file",
            path_in(&dir, "y.toml")
        )],
    );
}

#[test]
fn missing_config_dir() {
    let dir = dir_with(&[]);
    let missing = dir.path().join("nowhere");
    assert_config_error(
        &check(&missing),
        &[&format!(
            "{}: cannot read the configuration directory: No such file or directory",
            missing.display()
        )],
    );
}

#[test]
fn a_later_file_overrides_one_key_and_keeps_the_others() {
    // 20-fix.toml repairs the one bad key of 10-base.toml: passes.
    let dir = dir_with(&[
        ("10-base.toml", "[storage]\nbackend = \"embedded\"\n"),
        ("20-fix.toml", "[storage]\nbackend = \"memory\"\n"),
    ]);
    assert_ok(&check(dir.path()));
    // 20-other.toml sets another key of the same table: 10-base.toml's bad
    // key survives the merge and is still blamed on 10-base.toml.
    let dir = dir_with(&[
        (
            "10-base.toml",
            "[broker]\nreceive_maximum = 0\nmax_packet_size = 100\n",
        ),
        ("20-other.toml", "[broker]\nmax_packet_size = 200\n"),
    ]);
    assert_config_error(
        &check(dir.path()),
        &[&format!(
            "{}: broker.receive_maximum: must be at least 1",
            path_in(&dir, "10-base.toml")
        )],
    );
}

#[test]
fn unknown_backend_kind_lists_the_compiled_in_kinds() {
    let dir = dir_with(&[(
        "b.toml",
        "[backends.db]\nkind = \"oracle\"\nurl = \"oracle://fogg:hunter2@127.0.0.1/fogg\"\n",
    )]);
    let out = check(dir.path());
    // Which kinds are listed depends on the features built in; these two always are.
    assert_config_error(
        &out,
        &[&format!(
            "{}: backends.db.kind: unknown backend kind `oracle`; compiled-in kinds: embedded, ",
            path_in(&dir, "b.toml")
        )],
    );
    assert!(stderr(&out).contains("memory"));
    assert!(!stderr(&out).contains("hunter2"));
}

#[test]
fn chain_naming_an_undefined_backend() {
    let dir = dir_with(&[("auth.toml", "[auth]\nchain = [\"ghost\"]\n")]);
    assert_config_error(
        &check(dir.path()),
        &[&format!(
            "{}: auth.chain[0]: `ghost` is not a defined [backends.NAME]",
            path_in(&dir, "auth.toml")
        )],
    );
}

#[test]
fn a_backend_that_cannot_serve_its_concern() {
    let dir = dir_with(&[(
        "auth.toml",
        "[auth]\nchain = [\"mem\"]\n[backends.mem]\nkind = \"memory\"\n",
    )]);
    assert_config_error(
        &check(dir.path()),
        &["auth.chain[0]: backend `mem` (kind `memory`) cannot serve authentication"],
    );
}

#[test]
fn check_does_not_open_the_embedded_store() {
    // `--check` beside a running broker must not take its data directory.
    let dir = dir_with(&[(
        "s.toml",
        "[storage]\nbackend = \"embedded\"\n[broker]\ndata_dir = \"store-here\"\n",
    )]);
    let out = check(dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!dir.path().join("store-here").exists());
}

#[test]
fn bridges_are_refused_for_now() {
    let dir = dir_with(&[(
        "b.toml",
        "[[bridges]]\nname = \"cloud\"\nkind = \"mqtt\"\nurl = \"mqtt://u:hunter2@127.0.0.1:1884\"\n",
    )]);
    let out = check(dir.path());
    assert_config_error(&out, &["b.toml: bridges: bridges are not supported yet"]);
    assert!(!stderr(&out).contains("hunter2"));
}

#[test]
fn passwords_in_quoted_values_are_masked() {
    let dir = dir_with(&[(
        "s.toml",
        "[storage]\nbackend = [\"redis://u:hunter2@127.0.0.1\"]\n",
    )]);
    let out = check(dir.path());
    assert_config_error(&out, &["s.toml: storage.backend: wrong type"]);
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

#[test]
fn version_and_help() {
    let out = fogg().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");

    let out = fogg().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--config-dir <DIR>") && text.contains("--check"),
        "{text}"
    );
}

/// A started `fogg`, killed on drop if the test did not stop it.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(dir: &Path, rust_log: &str) -> Running {
        let mut child = fogg()
            .arg("--config-dir")
            .arg(dir)
            // The default data_dir is ./data: keep it inside the temp dir.
            .current_dir(dir)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        // Drain stderr for the whole run so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Running { child, lines }
    }

    /// Lines up to and including the first one containing `needle`.
    fn wait_for(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(needle);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no {needle:?} on stderr; got:\n{}", seen.join("\n"));
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "fogg did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `fogg: listening <name> <addr>` → (name, addr).
fn parse_listening(line: &str) -> (String, SocketAddr) {
    let rest = line
        .strip_prefix("fogg: listening ")
        .unwrap_or_else(|| panic!("{line}"));
    let (name, addr) = rest.split_once(' ').unwrap();
    (name.to_owned(), addr.parse().unwrap())
}

/// MQTT 3.1.1 CONNECT (clean session, client id "t") and the expected CONNACK.
fn mqtt_connect(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(&[
            0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b't',
        ])
        .unwrap();
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK accepted");
}

fn two_listeners_on_port_0() -> TempDir {
    dir_with(&[(
        "l.toml",
        "[broker]\nsys_interval = \"0s\"\n\
         [[listeners]]\nname = \"first\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"second\"\nbind = \"127.0.0.1:0\"\nmountpoint = \"b/\"\n",
    )])
}

#[test]
fn serves_on_port_0_and_stops_cleanly_on_sigterm() {
    let dir = two_listeners_on_port_0();
    // The listening lines do not depend on the log filter.
    let mut fogg = Running::start(dir.path(), "off");
    let first = parse_listening(fogg.wait_for("fogg: listening first").last().unwrap());
    let second = parse_listening(fogg.wait_for("fogg: listening second").last().unwrap());
    assert_eq!(first.0, "first");
    assert_ne!(first.1.port(), 0);
    assert_ne!(first.1, second.1);
    mqtt_connect(first.1);
    mqtt_connect(second.1);
    fogg.signal("TERM");
    let status = fogg.wait_exit();
    assert!(status.success(), "{status:?}");
}

#[test]
fn logs_the_bound_address_and_stops_on_sigint() {
    let dir = two_listeners_on_port_0();
    let mut fogg = Running::start(dir.path(), "info");
    let lines = fogg.wait_for("fogg: listening second");
    let (_, addr) = parse_listening(lines.last().unwrap());
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("listening on {addr} (listener second)"))),
        "{lines:#?}"
    );
    fogg.signal("INT");
    let status = fogg.wait_exit();
    assert!(status.success(), "{status:?}");
    fogg.wait_for("shutting down");
}

#[test]
fn a_port_in_use_fails_startup_naming_the_file() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = dir_with(&[(
        "l.toml",
        &format!("[[listeners]]\nname = \"busy\"\nbind = \"{addr}\"\n"),
    )]);
    let out = fogg()
        .arg("--config-dir")
        .arg(dir.path())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&path_in(&dir, "l.toml")), "{err}");
    assert!(err.contains(&format!("cannot bind {addr}")), "{err}");
}
