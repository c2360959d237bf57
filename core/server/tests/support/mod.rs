//! Helpers for driving the real `fogg` binary with real clients: the broker
//! process (started on port 0 from a temporary conf.d, killed on drop), the
//! `mosquitto_pub` / `mosquitto_sub` tools, Python `paho-mqtt` scripts, and a
//! small blocking MQTT client on fogg-codec for checking reason codes.
//!
//! Nothing here sleeps for long: every wait polls with a short interval up to
//! a deadline, and every child process is bounded by one.

#![allow(dead_code)]

pub mod auth;

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use fogg_codec::{ConnAck, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode};
use tempfile::TempDir;

/// How long the broker has to print its listening lines.
pub const START: Duration = Duration::from_secs(20);
/// How long a client process or a packet we expect may take.
pub const WAIT: Duration = Duration::from_secs(10);
/// Poll interval for every wait.
pub const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// The broker process.

/// A running `fogg --config-dir DIR`; killed (and reaped) on drop. When the
/// test panics, the broker's stderr is printed to help find out why.
pub struct Fogg {
    child: Child,
    dir: TempDir,
    listeners: Vec<(String, SocketAddr)>,
    log: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

/// One listener named `mqtt` on 127.0.0.1:0, with `broker` as the body of
/// the `[broker]` table.
pub fn config_with_broker(broker: &str) -> String {
    format!("[broker]\n{broker}\n\n[[listeners]]\nname = \"mqtt\"\nbind = \"127.0.0.1:0\"\n")
}

/// A temporary directory holding `files` (name, text).
pub fn dir_with(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// The `fogg` binary under test.
pub fn fogg_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fogg"))
}

impl Fogg {
    /// Start with one listener on 127.0.0.1:0 and these `[broker]` keys.
    pub fn with_broker(broker: &str) -> Fogg {
        Fogg::start(dir_with(&[("fogg.toml", &config_with_broker(broker))]), 1)
    }

    /// Start with defaults and one listener on 127.0.0.1:0.
    pub fn default_config() -> Fogg {
        Fogg::with_broker("")
    }

    /// Start `fogg --config-dir DIR` (working directory DIR too, so a
    /// relative `data_dir` stays inside it) and wait for `listeners`
    /// `fogg: listening NAME ADDR` lines.
    pub fn start(dir: TempDir, listeners: usize) -> Fogg {
        let mut child = fogg_command()
            .arg("--config-dir")
            .arg(dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fogg");
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
        let mut fogg = Fogg {
            child,
            dir,
            listeners: Vec::new(),
            log,
            exited: None,
        };
        let deadline = Instant::now() + START;
        while fogg.listeners.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(rest) => {
                    let (name, addr) = rest
                        .split_once(' ')
                        .unwrap_or_else(|| panic!("bad listening line {rest:?}"));
                    let addr: SocketAddr = addr
                        .parse()
                        .unwrap_or_else(|e| panic!("bad address in {rest:?}: {e}"));
                    fogg.listeners.push((name.to_owned(), addr));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = fogg.wait_exit(WAIT);
                    panic!(
                        "fogg exited ({status}) before listening; stderr:\n{}",
                        fogg.log()
                    );
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "fogg printed no `fogg: listening` line within {START:?}; stderr:\n{}",
                    fogg.log()
                ),
            }
        }
        fogg
    }

    /// The `(name, address)` of every listener, in the order printed.
    pub fn listeners(&self) -> &[(String, SocketAddr)] {
        &self.listeners
    }

    /// The first listener's port.
    pub fn port(&self) -> u16 {
        self.listeners[0].1.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.listeners[0].1
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything fogg wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Send `signal` ("TERM", "INT", ...) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// The exit status, waiting at most `limit` (panics, with the log, when
    /// the process is still running then).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait fogg") {
                self.exited = Some(status);
                // Let the reader thread take the last lines.
                thread::sleep(POLL);
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "fogg still running {limit:?} after being asked to stop; stderr:\n{}",
                    self.log()
                );
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Fogg {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("---- fogg stderr ----\n{}---------------------", self.log());
        }
    }
}

// ---------------------------------------------------------------------------
// Client tools: presence checks.

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether `what` is usable; when it is not, fail in CI and warn loudly otherwise.
fn available(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    let message = format!(
        "{what}: not installed; run scripts/install-test-deps.sh \
         (it installs Debian mosquitto-clients and Python paho-mqtt 2.x)"
    );
    if in_ci() {
        panic!("{message}");
    }
    eprintln!("\n!!!!!!!! SKIPPING: {message} !!!!!!!!\n");
    false
}

/// `mosquitto_pub` and `mosquitto_sub` are on the PATH.
pub fn have_mosquitto_clients() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        // stdbuf (coreutils) line-buffers mosquitto_sub's output.
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
    });
    available("mosquitto_pub / mosquitto_sub", ok)
}

/// `python3` with `paho-mqtt` 2.x.
pub fn have_paho() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        Command::new("python3")
            .args([
                "-c",
                "import sys, paho.mqtt; sys.exit(0 if paho.mqtt.__version__.startswith('2.') else 1)",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    available("Python paho-mqtt 2.x", ok)
}

/// Return from the test when mosquitto_pub/sub are missing (outside CI).
#[macro_export]
macro_rules! require_mosquitto_clients {
    () => {
        if !$crate::support::have_mosquitto_clients() {
            return;
        }
    };
}

/// Return from the test when python3 + paho-mqtt 2.x are missing (outside CI).
#[macro_export]
macro_rules! require_paho {
    () => {
        if !$crate::support::have_paho() {
            return;
        }
    };
}

// ---------------------------------------------------------------------------
// Child processes with a deadline.

/// Run `cmd` to completion within `limit`, collecting its output; a process
/// still running then is killed and the test fails with what it printed.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
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
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
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

/// Assert a successful exit, showing the output otherwise.
#[track_caller]
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child whose stdout lines are read by a thread and handed over a channel.
pub struct LineChild {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
    what: String,
}

impl LineChild {
    pub fn spawn(cmd: &mut Command) -> LineChild {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let lines = line_channel(child.stdout.take().unwrap());
        let stderr = Some(reader(child.stderr.take().unwrap()));
        LineChild {
            child,
            lines,
            seen: Vec::new(),
            stderr,
            what,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait (within WAIT) for a stdout line containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.seen.iter().any(|l| l.contains(needle)) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no line with {needle:?} from {} within {WAIT:?}; stdout so far:\n{}",
                    self.what,
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    panic!(
                        "{} ended without printing {needle:?}; stdout:\n{}",
                        self.what,
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    /// SIGKILL the process (its sockets are closed by the kernel, with no
    /// MQTT DISCONNECT) and reap it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait for the exit within `limit`; returns the status and every stdout line.
    pub fn finish(mut self, limit: Duration) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.seen.extend(self.lines.try_iter());
                panic!(
                    "{} did not finish within {limit:?}; stdout:\n{}",
                    self.what,
                    self.seen.join("\n")
                );
            }
            thread::sleep(POLL);
        };
        // The reader thread ends at EOF, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            self.seen.push(line);
        }
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        let stdout = std::mem::take(&mut self.seen);
        (
            status,
            stdout,
            String::from_utf8_lossy(&stderr).into_owned(),
        )
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn line_channel(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

// ---------------------------------------------------------------------------
// mosquitto_pub / mosquitto_sub.

/// The `-V` argument of the mosquitto tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mqtt {
    V31,
    V311,
    V5,
}

impl Mqtt {
    pub const ALL: [Mqtt; 3] = [Mqtt::V31, Mqtt::V311, Mqtt::V5];

    pub fn mosquitto(self) -> &'static str {
        match self {
            Mqtt::V31 => "mqttv31",
            Mqtt::V311 => "mqttv311",
            Mqtt::V5 => "mqttv5",
        }
    }

    /// The name the Python scripts take.
    pub fn paho(self) -> &'static str {
        match self {
            Mqtt::V31 => "v31",
            Mqtt::V311 => "v311",
            Mqtt::V5 => "v5",
        }
    }

    pub fn codec(self) -> ProtocolVersion {
        match self {
            Mqtt::V31 => ProtocolVersion::V3_1,
            Mqtt::V311 => ProtocolVersion::V3_1_1,
            Mqtt::V5 => ProtocolVersion::V5,
        }
    }
}

/// One message line printed by [`Sub`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 user properties as mosquitto_sub's `%P` prints them (`k:v`).
    pub user_properties: String,
    pub payload: String,
}

const SUB_FORMAT: &str = "MSG|%t|%q|%r|%P|%p";

/// `mosquitto_pub` against the broker; must succeed within WAIT.
pub fn mosquitto_pub(port: u16, version: Mqtt, args: &[&str]) {
    let out = output_within(
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-V", version.mosquitto()])
            .args(args),
        WAIT,
    );
    assert_success(
        &format!("mosquitto_pub -V {} {args:?}", version.mosquitto()),
        &out,
    );
}

/// A running `mosquitto_sub -C count -W timeout`, debug output on so that
/// [`Sub::start`] returns only once the SUBACK has arrived.
pub struct Sub {
    child: LineChild,
    args: Vec<String>,
}

impl Sub {
    /// Subscribe to `topic` at `qos` and wait for the SUBACK; the process
    /// exits after `count` messages or WAIT seconds.
    pub fn start(port: u16, version: Mqtt, topic: &str, qos: u8, count: usize) -> Sub {
        Sub::start_with(port, version, topic, qos, count, &[])
    }

    pub fn start_with(
        port: u16,
        version: Mqtt,
        topic: &str,
        qos: u8,
        count: usize,
        extra: &[&str],
    ) -> Sub {
        let mut args: Vec<String> = [
            "-h",
            "127.0.0.1",
            "-V",
            version.mosquitto(),
            "-t",
            topic,
            "-d",
            "-F",
            SUB_FORMAT,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(["-p".to_owned(), port.to_string()]);
        args.extend(["-q".to_owned(), qos.to_string()]);
        args.extend(["-C".to_owned(), count.to_string()]);
        args.extend(["-W".to_owned(), WAIT.as_secs().to_string()]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        // mosquitto_sub's debug lines go through stdio, block-buffered on a
        // pipe: line buffering makes the SUBACK line arrive when it happens.
        let mut child = LineChild::spawn(
            Command::new("stdbuf")
                .args(["-oL", "mosquitto_sub"])
                .args(&args),
        );
        child.wait_for_line("received SUBACK");
        Sub { child, args }
    }

    /// Wait for the exit (after `count` messages) and return the messages.
    pub fn finish(self) -> Vec<Received> {
        let (status, lines, stderr) = self.child.finish(WAIT + Duration::from_secs(5));
        assert!(
            status.success(),
            "mosquitto_sub {:?} failed ({status}; 27 = timed out before its -C count)\nstdout:\n{}\nstderr:\n{stderr}",
            self.args,
            lines.join("\n")
        );
        lines.iter().filter_map(|l| parse_received(l)).collect()
    }
}

fn parse_received(line: &str) -> Option<Received> {
    let rest = line.strip_prefix("MSG|")?;
    let mut parts = rest.splitn(5, '|');
    let topic = parts.next()?.to_owned();
    let qos = parts.next()?.parse().ok()?;
    let retain = parts.next()? == "1";
    let user_properties = parts.next()?.to_owned();
    let payload = parts.next()?.to_owned();
    Some(Received {
        topic,
        qos,
        retain,
        user_properties,
        payload,
    })
}

// ---------------------------------------------------------------------------
// Python paho-mqtt scripts.

pub fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// `python3 tests/python/NAME args...` with unbuffered output.
pub fn python(name: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg("-u").arg(python_script(name)).args(args);
    cmd
}

/// Run a script to completion (within `limit`); returns its stdout lines.
pub fn run_python(name: &str, args: &[&str], limit: Duration) -> Vec<String> {
    let out = output_within(&mut python(name, args), limit);
    assert_success(&format!("python3 {name} {args:?}"), &out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------
// A blocking raw MQTT client on fogg-codec.

/// What a read gave.
#[derive(Debug)]
// Short-lived return value; boxing the packet would only make matches noisier.
#[allow(clippy::large_enum_variant)]
pub enum Recv {
    Packet(Packet),
    Closed,
    Nothing,
}

pub struct RawClient {
    stream: TcpStream,
    version: ProtocolVersion,
    /// Bytes read and not yet decoded.
    buf: Vec<u8>,
}

impl RawClient {
    pub fn open(addr: SocketAddr, version: ProtocolVersion) -> RawClient {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            version,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, packet: &Packet) {
        assert!(self.try_send(packet), "write failed");
    }

    /// Send several packets in one write, so the broker reads them together.
    pub fn send_all(&mut self, packets: &[Packet]) {
        let mut out = Default::default();
        for packet in packets {
            fogg_codec::encode(packet, self.version, &mut out).expect("encode");
        }
        self.stream.write_all(&out).expect("write");
    }

    /// Send; false when the connection is gone (a broker killed mid-test).
    pub fn try_send(&mut self, packet: &Packet) -> bool {
        let mut out = Default::default();
        fogg_codec::encode(packet, self.version, &mut out).expect("encode");
        self.stream.write_all(&out).is_ok()
    }

    /// Open, send CONNECT (clean start, keep alive 60, client id `id`), and
    /// return the client with the decoded CONNACK.
    pub fn connect(addr: SocketAddr, version: ProtocolVersion, id: &str) -> (RawClient, ConnAck) {
        let mut client = RawClient::open(addr, version);
        client.send(&connect_packet(version, id));
        match client.recv_within(WAIT) {
            Recv::Packet(Packet::ConnAck(ack)) => (client, *ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// The next packet within `limit`.
    pub fn recv_within(&mut self, limit: Duration) -> Recv {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(packet) = self.decode_buffered() {
                return Recv::Packet(packet);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Recv::Nothing;
            }
            match self.read_some(left) {
                Some(0) => return Recv::Closed,
                Some(_) => {}
                None => return Recv::Nothing,
            }
        }
    }

    fn decode_buffered(&mut self) -> Option<Packet> {
        // fogg-codec decodes from a `BytesMut`; this keeps a plain Vec and
        // hands it over per attempt (the type is inferred from `decode`).
        let mut bytes = From::from(&self.buf[..]);
        let packet = fogg_codec::decode(&mut bytes, self.version, u32::MAX)
            .unwrap_or_else(|e| panic!("broker sent an undecodable packet: {e}"))?;
        let consumed = self.buf.len() - bytes.len();
        self.buf.drain(..consumed);
        Some(packet)
    }

    /// Some(n) bytes read (0 = closed), None = nothing within `limit`.
    fn read_some(&mut self, limit: Duration) -> Option<usize> {
        self.stream
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .unwrap();
        let mut chunk = [0u8; 4096];
        loop {
            return match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    Some(n)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
                // A reset counts as closed.
                Err(_) => Some(0),
            };
        }
    }

    /// Every byte the broker sends until it closes the connection (within WAIT).
    pub fn raw_until_closed(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "connection not closed within {WAIT:?}; got {:02X?}",
                    self.buf
                );
            }
            if self.read_some(left) == Some(0) {
                return std::mem::take(&mut self.buf);
            }
        }
    }

    /// Packets until the broker closes the connection (within WAIT).
    pub fn packets_until_closed(&mut self) -> Vec<Packet> {
        let deadline = Instant::now() + WAIT;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left) {
                Recv::Packet(p) => out.push(p),
                Recv::Closed => return out,
                Recv::Nothing => panic!("connection not closed within {WAIT:?}; got {out:?}"),
            }
        }
    }

    /// PUBLISH at QoS 1 and wait for a successful PUBACK.
    pub fn publish_qos1(&mut self, topic: &str, payload: &str, packet_id: u16) {
        self.send(&Packet::Publish(Box::new(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.to_owned(),
            packet_id: Some(packet_id),
            payload: payload.as_bytes().to_vec().into(),
            properties: Properties::default(),
        })));
        match self.recv_within(WAIT) {
            Recv::Packet(Packet::PubAck(ack)) => {
                assert_eq!(ack.packet_id, packet_id, "{ack:?}");
                assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    /// PINGREQ answered by PINGRESP: the connection is alive.
    pub fn ping(&mut self) {
        self.send(&Packet::PingReq);
        match self.recv_within(WAIT) {
            Recv::Packet(Packet::PingResp) => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }

    /// A clean DISCONNECT, then wait for the broker to close.
    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Default::default()));
        let _ = self.packets_until_closed();
    }
}

pub fn connect_packet(version: ProtocolVersion, id: &str) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: id.to_owned(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }))
}

/// Poll `f` every POLL until it returns Some, or panic with `what` after `limit`.
pub fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not within {limit:?}");
        }
        thread::sleep(POLL);
    }
}
