//! Scenarios about connections rather than messages: `idle` and
//! `connect-rate`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fogg_codec::{Packet, ReasonCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::client::{self, Addrs, Conn, Credentials};
use crate::report::{Report, percentile};

/// Resident set size of a process in bytes, from /proc/PID/status.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS line in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// This process's soft limit on open files, from /proc/self/limits.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

pub struct IdleParams {
    pub connections: usize,
    pub broker_pid: u32,
    pub settle: Duration,
    pub concurrency: usize,
    pub tag: String,
}

pub async fn idle(addrs: Arc<Addrs>, p: IdleParams) -> Result<Report> {
    if let Some(limit) = open_files_limit()
        && (p.connections as u64) + 64 > limit
    {
        bail!(
            "{} connections need more open files than this process may have ({limit}); \
             raise it with `ulimit -n`",
            p.connections
        );
    }
    let before = rss_bytes(p.broker_pid)?;
    let start = Instant::now();
    let tag = p.tag.clone();
    let results = client::bounded(p.connections, p.concurrency, |i| {
        let addrs = addrs.clone();
        let id = format!("{tag}-i{i}");
        async move { Conn::connect(&addrs, &id).await }
    })
    .await;
    let connect_secs = start.elapsed().as_secs_f64();
    let mut conns = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(c) => conns.push(c),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    tokio::time::sleep(p.settle).await;
    let after = rss_bytes(p.broker_pid)?;
    let opened = conns.len();

    // Close them all, a bounded number at a time.
    let mut set = JoinSet::new();
    for conn in conns {
        if set.len() >= p.concurrency.max(1) {
            let _ = set.join_next().await;
        }
        set.spawn(conn.disconnect());
    }
    while set.join_next().await.is_some() {}
    tokio::time::sleep(p.settle).await;
    let closed = rss_bytes(p.broker_pid).unwrap_or(0);

    let per_conn = if opened > 0 {
        (after.saturating_sub(before)) as f64 / opened as f64 / 1024.0
    } else {
        0.0
    };
    let failed = errors.len();
    let mut errs = Vec::new();
    if let Some(first) = errors.into_iter().next() {
        errs.push(format!("{failed} connections failed; first: {first}"));
    }
    Ok(Report {
        scenario: "idle".into(),
        params: vec![
            ("connections", json!(p.connections)),
            ("source_addrs", json!(addrs_count(&addrs))),
        ],
        metrics: vec![
            ("rss_per_conn_kib", per_conn, "KiB"),
            ("rss_before_mib", before as f64 / 1048576.0, "MiB"),
            ("rss_after_mib", after as f64 / 1048576.0, "MiB"),
            ("rss_after_close_mib", closed as f64 / 1048576.0, "MiB"),
            ("opened", opened as f64, "conns"),
            ("connect_secs", connect_secs, "s"),
        ],
        errors: errs,
        ..Report::default()
    })
}

fn addrs_count(addrs: &Addrs) -> usize {
    addrs.source_count()
}

pub struct ConnectRateParams {
    pub duration: Duration,
    pub concurrency: usize,
    pub tag: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub fixed_ids: bool,
    pub warmup: Duration,
}

pub async fn connect_rate(addrs: Arc<Addrs>, p: ConnectRateParams) -> Result<Report> {
    let start = Instant::now();
    let measure_from = start + p.warmup;
    let deadline = measure_from + p.duration;
    let counter = Arc::new(AtomicU64::new(0));
    let credentials = Arc::new(if p.username.is_some() || p.password.is_some() {
        Credentials {
            username: p.username.clone(),
            password: p.password.clone(),
        }
    } else {
        addrs.credentials().clone()
    });
    let mut set = JoinSet::new();
    for w in 0..p.concurrency.max(1) {
        let addrs = addrs.clone();
        let tag = p.tag.clone();
        let counter = counter.clone();
        let credentials = credentials.clone();
        let fixed_ids = p.fixed_ids;
        set.spawn(async move {
            let mut ok = Vec::new();
            let mut errors = Vec::new();
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let id = if fixed_ids {
                    format!("{tag}-w{w}")
                } else {
                    format!("{tag}-w{w}-{n}")
                };
                let t = Instant::now();
                match tokio::time::timeout(
                    client::HANDSHAKE_TIMEOUT,
                    cycle(&addrs, &id, &credentials),
                )
                .await
                {
                    Ok(Ok(())) if t >= measure_from => {
                        ok.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(0));
                    }
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errors.push(format!("{e:#}")),
                    Err(_) => errors.push("cycle timed out".to_string()),
                }
            }
            (ok, errors)
        });
    }
    let mut cycles = Vec::new();
    let mut errors = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((ok, errs)) => {
                cycles.extend(ok);
                errors.extend(errs);
            }
            Err(e) => errors.push(format!("worker: {e}")),
        }
    }
    let elapsed = measure_from.elapsed().as_secs_f64();
    cycles.sort_unstable();
    let us = |v: Option<u64>| v.unwrap_or(0) as f64 / 1000.0;
    let failed = errors.len();
    let mut errs = Vec::new();
    if let Some(first) = errors.into_iter().next() {
        errs.push(format!("{failed} cycles failed; first: {first}"));
    }
    Ok(Report {
        scenario: "connect-rate".into(),
        params: vec![
            ("authenticated", json!(credentials.username.is_some())),
            ("fixed_ids", json!(p.fixed_ids)),
            ("warmup_s", json!(p.warmup.as_secs_f64())),
            ("concurrency", json!(p.concurrency)),
            ("duration_s", json!(p.duration.as_secs_f64())),
        ],
        metrics: vec![
            ("connects_per_s", cycles.len() as f64 / elapsed, "cycles/s"),
            ("cycle_p50_us", us(percentile(&cycles, 50.0)), "us"),
            ("cycle_p99_us", us(percentile(&cycles, 99.0)), "us"),
            ("cycles", cycles.len() as f64, ""),
        ],
        errors: errs,
        ..Report::default()
    })
}

/// TCP connect, CONNECT, CONNACK, DISCONNECT, then close and wait for the
/// broker's side of the close.
async fn cycle(addrs: &Addrs, client_id: &str, credentials: &Credentials) -> Result<()> {
    let stream = addrs.open().await?;
    let mut conn = Conn {
        stream,
        rbuf: bytes::BytesMut::with_capacity(64),
    };
    let mut connect = client::connect_packet(client_id, true);
    credentials.apply(&mut connect);
    conn.send(&connect).await?;
    match conn.recv().await? {
        Packet::ConnAck(ack) if ack.reason == ReasonCode::Success => {}
        Packet::ConnAck(ack) => bail!("CONNACK refused: {:?}", ack.reason),
        other => bail!("expected CONNACK, got {}", other.name()),
    }
    conn.send(&client::disconnect_packet()).await?;
    // The broker may already have closed after the DISCONNECT; over TLS the
    // close_notify then fails to go out, which is not the cycle's failure.
    let _ = conn.stream.shutdown().await;
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(n) = conn.stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tmosquitto\nVmPeak:\t  9000 kB\nVmRSS:\t    6144 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(6144 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }
}
