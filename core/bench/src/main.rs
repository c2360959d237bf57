//! fogg-bench: a load generator for MQTT brokers on loopback.
//!
//! `fogg-bench --port P <scenario> [options]`; see README.md for what each
//! scenario measures. Prints one human line per run and, with `--json`, a
//! JSON object on the next line. Exit status: 0 ok, 1 the run could not be
//! made (no broker, setup failed, watchdog), 2 the run finished but had
//! errors or lost/doubled QoS 1/2 messages.

mod client;
mod conns;
mod flow;
mod payload;
mod report;
mod tracker;
mod transport;
mod ws;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use fogg_codec::QoS;
use serde_json::json;

use crate::client::{Addrs, Credentials};
use crate::flow::{FlowParams, FlowResult, Mode, Topology};
use crate::report::{Report, percentile};
use crate::transport::Transport;

#[derive(Debug, Parser)]
#[command(
    name = "fogg-bench",
    version,
    about = "Load generator for MQTT brokers on loopback (MQTT 3.1.1)"
)]
struct Cli {
    /// Broker address; loopback only (127.0.0.0/8).
    #[arg(long, default_value = "127.0.0.1")]
    host: Ipv4Addr,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Also print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Name of the broker under test, shown in the output.
    #[arg(long, default_value = "")]
    label: String,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Client sockets are bound to 127.0.0.2, .3, ... in turn, this many.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u8).range(1..=253))]
    source_addrs: u8,
    /// Connections opened at once during setup.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// MQTT over TLS; the server certificate must chain to --cafile.
    #[arg(long, requires = "cafile", conflicts_with = "ws")]
    tls: bool,
    /// PEM CA certificates trusted for --tls.
    #[arg(long, requires = "tls")]
    cafile: Option<PathBuf>,
    /// Name the server certificate is checked against (a DNS name or an IP).
    #[arg(long, default_value = "localhost")]
    tls_server_name: String,
    /// Resume TLS sessions (tickets / IDs) on new connections instead of a
    /// full handshake each time.
    #[arg(long, requires = "tls")]
    tls_resume: bool,
    /// Username of every CONNECT (all scenarios; connect-rate's own
    /// --username, when given, takes precedence).
    #[arg(long = "connect-username")]
    connect_username: Option<String>,
    /// Password of every CONNECT.
    #[arg(long = "connect-password")]
    connect_password: Option<String>,
    /// MQTT over WebSocket (subprotocol `mqtt`) at --ws-path.
    #[arg(long)]
    ws: bool,
    #[arg(long, default_value = "/mqtt")]
    ws_path: String,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// N publisher→subscriber pairs, one topic per pair; delivered msgs/s.
    Pairs {
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        #[command(flatten)]
        flow: FlowArgs,
    },
    /// N publishers → 1 subscriber on a wildcard; delivered msgs/s.
    FanIn {
        #[arg(long, default_value_t = 100)]
        publishers: usize,
        #[command(flatten)]
        flow: FlowArgs,
    },
    /// 1 publisher → N subscribers of one topic; deliveries/s.
    FanOut {
        #[arg(long, default_value_t = 500)]
        subscribers: usize,
        #[command(flatten)]
        flow: FlowArgs,
    },
    /// Open loop at a fixed rate, 1 publisher → 1 subscriber; latency percentiles.
    Latency {
        /// Messages per second.
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        rate: u64,
        #[arg(long, default_value = "1", value_parser = parse_qos)]
        qos: QoS,
        #[arg(long, default_value_t = 64)]
        payload: usize,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Samples sent before this are not counted (default: min(1s, duration/5)).
        #[arg(long, value_parser = parse_duration)]
        warmup: Option<Duration>,
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        drain: Duration,
    },
    /// Hold many idle connections; broker RSS per connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Process id of the broker, for /proc/PID/status.
        #[arg(long)]
        broker_pid: u32,
        /// Pause before reading RSS.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        settle: Duration,
    },
    /// CONNECT/CONNACK/DISCONNECT cycles per second.
    ConnectRate {
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Username for every CONNECT (to measure an auth backend).
        #[arg(long)]
        username: Option<String>,
        /// Password for every CONNECT.
        #[arg(long)]
        password: Option<String>,
        /// Each worker reuses one client id for all its cycles (default: a
        /// new id per cycle), so an auth cache keyed on the client id hits.
        #[arg(long)]
        fixed_ids: bool,
        /// Cycles before this are run but not counted (e.g. while an auth
        /// cache fills); the measured part still lasts --duration.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        warmup: Duration,
    },
}

#[derive(Debug, Args)]
struct FlowArgs {
    #[arg(long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,
    /// Unacknowledged QoS 1/2 messages a publisher may have.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    inflight: u32,
    /// Messages a publisher may have sent but not yet seen delivered to all its
    /// subscribers (any QoS). Default: 500 for pairs and fan-out,
    /// 1000/publishers for fan-in, so no subscriber has more than ~1000 in flight.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    window: Option<u32>,
    /// Payload bytes (at least 20: publisher id, sequence, timestamp).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Not measured at the start (default: min(1s, duration/5)).
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// After the run: time for the last acks and deliveries before counting loss.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    drain: Duration,
    /// A full end-to-end window that does not move for this long is written off.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    stall: Duration,
    /// Most PUBLISH packets per write.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
    /// Subscribers use persistent sessions (clean session off), so a broker
    /// with persistence writes every QoS 1/2 message it queues for them.
    #[arg(long)]
    persistent: bool,
    /// Each publisher sends exactly N messages; the run ends as soon as all
    /// are delivered (--duration + --drain is then only a time limit, and the
    /// rate covers the whole run). For fixed-work runs such as
    /// scripts/bench/instructions.sh.
    #[arg(long)]
    messages: Option<u64>,
}

fn parse_qos(s: &str) -> Result<QoS, String> {
    s.parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| format!("QoS must be 0, 1 or 2, not {s:?}"))
}

/// `10s`, `500ms`, `2m`, `1.5s` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (e.g. 10s, 500ms, 2m)"))?;
    if !v.is_finite() || v < 0.0 || v * scale > 86_400.0 {
        return Err(format!("duration out of range: {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

fn default_warmup(duration: Duration, warmup: Option<Duration>) -> Duration {
    warmup.unwrap_or_else(|| (duration / 5).min(Duration::from_secs(1)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = cli.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fogg-bench: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let json_out = cli.json;
    let result = runtime.block_on(async move {
        let limit = watchdog(&cli.scenario);
        match tokio::time::timeout(limit, run(cli)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!("watchdog: the run did not finish within {limit:?}")),
        }
    });
    // Dropping the runtime closes whatever a stuck task still holds.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(report) => {
            println!("{}", report.human());
            if json_out {
                println!("{}", report.json());
            }
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("fogg-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Longest a run may take before it is abandoned.
fn watchdog(s: &Scenario) -> Duration {
    let slack = Duration::from_secs(120);
    match s {
        Scenario::Pairs { flow, .. }
        | Scenario::FanIn { flow, .. }
        | Scenario::FanOut { flow, .. } => flow.duration + flow.drain + slack,
        Scenario::Latency {
            duration, drain, ..
        } => *duration + *drain + slack,
        Scenario::Idle { settle, .. } => *settle * 2 + slack * 2,
        Scenario::ConnectRate {
            duration, warmup, ..
        } => *duration + *warmup + slack,
    }
}

async fn run(cli: Cli) -> Result<Report> {
    let transport = transport(&cli)?;
    let transport_name = transport.name();
    let addrs = Arc::new(
        Addrs::new(
            SocketAddrV4::new(cli.host, cli.port),
            cli.source_addrs,
            transport,
        )?
        .with_credentials(Credentials {
            username: cli.connect_username.clone(),
            password: cli.connect_password.clone(),
        }),
    );
    let tag = format!("fb{}", std::process::id());
    let prefix = format!("fogg-bench/{}", std::process::id());
    let cc = cli.connect_concurrency.max(1);
    let mut report = match cli.scenario {
        Scenario::Pairs { pairs, flow } => {
            if pairs == 0 {
                bail!("--pairs must be at least 1");
            }
            let topics: Vec<String> = (0..pairs).map(|i| format!("{prefix}/pairs/{i}")).collect();
            let topo = Topology {
                pub_topics: topics.clone(),
                sub_filters: topics,
                routes: (0..pairs).map(|i| vec![i]).collect(),
            };
            let window = flow.window.unwrap_or(500);
            let params = vec![("pairs", json!(pairs))];
            throughput(
                "pairs",
                "delivered_per_s",
                "msg/s",
                addrs,
                topo,
                flow,
                window,
                params,
                cc,
                tag,
            )
            .await?
        }
        Scenario::FanIn { publishers, flow } => {
            if publishers == 0 {
                bail!("--publishers must be at least 1");
            }
            let topo = Topology {
                pub_topics: (0..publishers)
                    .map(|i| format!("{prefix}/fanin/{i}"))
                    .collect(),
                sub_filters: vec![format!("{prefix}/fanin/+")],
                routes: (0..publishers).map(|_| vec![0]).collect(),
            };
            let window = flow
                .window
                .unwrap_or_else(|| u32::try_from((1000 / publishers).max(1)).unwrap_or(1));
            let params = vec![("publishers", json!(publishers))];
            throughput(
                "fan-in",
                "delivered_per_s",
                "msg/s",
                addrs,
                topo,
                flow,
                window,
                params,
                cc,
                tag,
            )
            .await?
        }
        Scenario::FanOut { subscribers, flow } => {
            if subscribers == 0 {
                bail!("--subscribers must be at least 1");
            }
            let topic = format!("{prefix}/fanout");
            let topo = Topology {
                pub_topics: vec![topic.clone()],
                sub_filters: vec![topic; subscribers],
                routes: vec![(0..subscribers).collect()],
            };
            let window = flow.window.unwrap_or(500);
            let params = vec![("subscribers", json!(subscribers))];
            throughput(
                "fan-out",
                "deliveries_per_s",
                "deliveries/s",
                addrs,
                topo,
                flow,
                window,
                params,
                cc,
                tag,
            )
            .await?
        }
        Scenario::Latency {
            rate,
            qos,
            payload,
            duration,
            warmup,
            drain,
        } => {
            let topic = format!("{prefix}/latency");
            let topo = Topology {
                pub_topics: vec![topic.clone()],
                sub_filters: vec![topic],
                routes: vec![vec![0]],
            };
            let params = FlowParams {
                qos,
                payload,
                duration,
                warmup: default_warmup(duration, warmup),
                drain,
                stall: Duration::from_secs(1),
                mode: Mode::OpenLoop { rate },
                connect_concurrency: cc,
                record_latency: true,
                persistent: false,
                tag,
                messages: None,
            };
            let mut r = flow::run(addrs, topo, params).await?;
            r.latencies_ns.sort_unstable();
            let us = |p: f64| percentile(&r.latencies_ns, p).unwrap_or(0) as f64 / 1000.0;
            let mean = if r.latencies_ns.is_empty() {
                0.0
            } else {
                r.latencies_ns.iter().sum::<u64>() as f64 / r.latencies_ns.len() as f64 / 1000.0
            };
            let mut report = flow_report(
                "latency",
                vec![
                    ("rate", json!(rate)),
                    ("qos", json!(qos as u8)),
                    ("payload", json!(payload)),
                    ("duration_s", json!(duration.as_secs_f64())),
                ],
                &r,
                qos,
            );
            report.metrics = vec![
                ("p50_us", us(50.0), "us"),
                ("p99_us", us(99.0), "us"),
                ("p999_us", us(99.9), "us"),
                ("max_us", us(100.0), "us"),
                ("mean_us", mean, "us"),
                (
                    "sent_per_s",
                    r.sent_in_window as f64 / r.window_secs,
                    "msg/s",
                ),
                ("samples", r.latencies_ns.len() as f64, ""),
            ];
            report
        }
        Scenario::Idle {
            connections,
            broker_pid,
            settle,
        } => {
            conns::idle(
                addrs,
                conns::IdleParams {
                    connections,
                    broker_pid,
                    settle,
                    concurrency: cc,
                    tag,
                },
            )
            .await?
        }
        Scenario::ConnectRate {
            duration,
            concurrency,
            username,
            password,
            fixed_ids,
            warmup,
        } => {
            conns::connect_rate(
                addrs,
                conns::ConnectRateParams {
                    duration,
                    concurrency,
                    tag,
                    username,
                    password,
                    fixed_ids,
                    warmup,
                },
            )
            .await?
        }
    };
    report.label = cli.label;
    report.params.push(("transport", json!(transport_name)));
    Ok(report)
}

fn transport(cli: &Cli) -> Result<Transport> {
    if cli.tls {
        let cafile = cli
            .cafile
            .as_deref()
            .ok_or_else(|| anyhow!("--tls needs --cafile"))?;
        return Transport::tls(cafile, &cli.tls_server_name, cli.tls_resume);
    }
    if cli.ws {
        if !cli.ws_path.starts_with('/') {
            bail!("--ws-path must start with `/`, not {:?}", cli.ws_path);
        }
        return Ok(Transport::Ws {
            url: format!("ws://{}:{}{}", cli.host, cli.port, cli.ws_path),
        });
    }
    Ok(Transport::Tcp)
}

#[allow(clippy::too_many_arguments)]
async fn throughput(
    scenario: &str,
    metric: &'static str,
    unit: &'static str,
    addrs: Arc<Addrs>,
    topo: Topology,
    flow: FlowArgs,
    window: u32,
    mut params: Vec<(&'static str, serde_json::Value)>,
    connect_concurrency: usize,
    tag: String,
) -> Result<Report> {
    let fp = FlowParams {
        qos: flow.qos,
        payload: flow.payload,
        duration: flow.duration,
        warmup: default_warmup(flow.duration, flow.warmup),
        drain: flow.drain,
        stall: flow.stall,
        mode: Mode::ClosedLoop {
            inflight: flow.inflight,
            window,
            batch: flow.batch,
        },
        connect_concurrency,
        record_latency: false,
        persistent: flow.persistent,
        tag,
        messages: flow.messages,
    };
    params.extend([
        ("persistent", json!(flow.persistent)),
        ("qos", json!(flow.qos as u8)),
        ("payload", json!(flow.payload)),
        ("duration_s", json!(flow.duration.as_secs_f64())),
        ("window", json!(window)),
    ]);
    if flow.qos != QoS::AtMostOnce {
        params.push(("inflight", json!(flow.inflight)));
    }
    if let Some(n) = flow.messages {
        params.push(("messages", json!(n)));
    }
    let r = flow::run(addrs, topo, fp).await?;
    let mut report = flow_report(scenario, params, &r, flow.qos);
    report.metrics = vec![
        (metric, r.delivered_in_window as f64 / r.window_secs, unit),
        (
            "sent_per_s",
            r.sent_in_window as f64 / r.window_secs,
            "msg/s",
        ),
        ("setup_s", r.setup_secs, "s"),
    ];
    Ok(report)
}

fn flow_report(
    scenario: &str,
    params: Vec<(&'static str, serde_json::Value)>,
    r: &FlowResult,
    qos: QoS,
) -> Report {
    Report {
        scenario: scenario.to_string(),
        params,
        publishers: Some(r.publishers.clone()),
        counters: vec![
            ("window_stalls", r.stalls),
            ("acks_out_of_order", r.acks_out_of_order),
            ("stray", r.stray),
            ("unexpected_packets", r.unexpected_packets),
        ],
        errors: r.errors.clone(),
        strict_delivery: qos != QoS::AtMostOnce,
        ..Report::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn cli_parses_every_scenario() {
        for args in [
            &[
                "fogg-bench",
                "--port",
                "1",
                "pairs",
                "--qos",
                "1",
                "--inflight",
                "10",
            ][..],
            &["fogg-bench", "--port", "1", "fan-in", "--publishers", "3"],
            &["fogg-bench", "--port", "1", "fan-out", "--subscribers", "3"],
            &["fogg-bench", "--port", "1", "pairs", "--messages", "100"],
            &["fogg-bench", "--port", "1", "latency", "--rate", "10"],
            &["fogg-bench", "--port", "1", "idle", "--broker-pid", "1"],
            &[
                "fogg-bench",
                "--port",
                "1",
                "connect-rate",
                "--duration",
                "1s",
            ],
        ] {
            Cli::try_parse_from(args).unwrap();
        }
        assert!(Cli::try_parse_from(["fogg-bench", "pairs", "--qos", "3"]).is_err());
        // TLS needs its CA; TLS and WebSocket exclude each other.
        assert!(Cli::try_parse_from(["fogg-bench", "--tls", "pairs"]).is_err());
        assert!(
            Cli::try_parse_from(["fogg-bench", "--tls", "--cafile", "ca.pem", "--ws", "pairs"])
                .is_err()
        );
        Cli::try_parse_from(["fogg-bench", "--tls", "--cafile", "ca.pem", "pairs"]).unwrap();
        Cli::try_parse_from(["fogg-bench", "--ws", "pairs"]).unwrap();
    }

    #[test]
    fn only_loopback_brokers() {
        let tcp = || Transport::Tcp;
        assert!(
            Addrs::new(
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1883),
                4,
                tcp()
            )
            .is_err()
        );
        assert!(
            Addrs::new(
                SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 1883),
                4,
                tcp()
            )
            .is_ok()
        );
    }
}
