//! The message-flow engine behind `pairs`, `fan-in`, `fan-out` and `latency`.
//!
//! A scenario describes publishers (one topic each), subscribers (one filter
//! each) and which subscribers each publisher reaches. Publishers run either
//!
//! * closed loop: at most `inflight` unacknowledged messages (QoS 1/2), and,
//!   for every QoS, at most `window` messages sent but not yet received by all
//!   of its subscribers (the end-to-end window keeps the broker from merely
//!   buffering: throughput is what subscribers actually receive). A window that
//!   does not move for `stall` (a QoS 0 message the broker dropped) is
//!   written off and counted as a stall; or
//! * open loop at a fixed rate, each message in its own write and stamped with
//!   the time it is written (the latency scenario).
//!
//! Subscribers count every message per publisher (see [`crate::tracker`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::transport::{ReadHalf, WriteHalf};
use anyhow::{Result, anyhow, bail};
use bytes::BytesMut;
use fogg_codec::{Packet, PubAck, QoS};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::sleep_until;

use crate::client::{self, Addrs, Conn, MAX_PACKET, VERSION};
use crate::payload::{PublishTemplate, Stamp, packet_id};
use crate::tracker::{PublisherReport, StreamTracker};

/// Who publishes where and who hears it.
#[derive(Debug, Clone)]
pub struct Topology {
    pub pub_topics: Vec<String>,
    pub sub_filters: Vec<String>,
    /// `routes[p]`: indices of the subscribers that receive publisher `p`.
    pub routes: Vec<Vec<usize>>,
}

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    ClosedLoop {
        inflight: u32,
        window: u32,
        batch: u32,
    },
    OpenLoop {
        rate: u64,
    },
}

#[derive(Debug, Clone)]
pub struct FlowParams {
    pub qos: QoS,
    pub payload: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// After `duration`: time allowed for acknowledgements and the last
    /// deliveries before counting what is missing as lost.
    pub drain: Duration,
    pub stall: Duration,
    pub mode: Mode,
    pub connect_concurrency: usize,
    /// Keep a latency sample for every message sent inside the measured window.
    pub record_latency: bool,
    /// Subscribers ask for persistent sessions (clean session off).
    pub persistent: bool,
    /// Prefix of client ids.
    pub tag: String,
    /// Closed loop: each publisher sends exactly this many messages and the
    /// run ends once all are delivered (or at `duration` + `drain`); the
    /// rate then covers the whole run, with no warm-up left out.
    pub messages: Option<u64>,
}

/// What a flow run measured.
#[derive(Debug, Default)]
pub struct FlowResult {
    /// PUBLISH packets received by subscribers inside the measured window.
    pub delivered_in_window: u64,
    /// PUBLISH packets written by publishers inside the measured window.
    pub sent_in_window: u64,
    pub window_secs: f64,
    pub publishers: Vec<PublisherReport>,
    /// End-to-end windows written off after a stall.
    pub stalls: u64,
    /// Acknowledgements that arrived for another packet id than the oldest
    /// outstanding one.
    pub acks_out_of_order: u64,
    /// Messages from a publisher the subscriber should not hear, or without a
    /// valid payload header.
    pub stray: u64,
    /// Packets no client expected.
    pub unexpected_packets: u64,
    /// Latency samples (ns), when recorded.
    pub latencies_ns: Vec<u64>,
    pub errors: Vec<String>,
    pub setup_secs: f64,
}

struct PubShared {
    notify: Notify,
    sent: AtomicU64,
    acked: AtomicU64,
    /// Distinct messages from this publisher delivered, per subscriber of it.
    delivered: Vec<Arc<AtomicU64>>,
    /// A subscriber wakes the publisher once its `delivered` reaches this
    /// (`u64::MAX`: not waiting for deliveries). Waking only at a threshold
    /// keeps the generator from paying a task wake-up per message.
    delivered_wake_at: AtomicU64,
    /// The ack reader wakes the publisher once `acked` reaches this.
    acked_wake_at: AtomicU64,
    closing: AtomicBool,
}

impl PubShared {
    fn min_delivered(&self) -> u64 {
        self.delivered
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }
}

#[derive(Clone, Copy)]
struct Clock {
    epoch: Instant,
    warmup_end: Instant,
    deadline: Instant,
    drain_deadline: Instant,
}

impl Clock {
    fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

struct SubStream {
    tracker: StreamTracker,
    delivered: Arc<AtomicU64>,
    dirty: bool,
}

#[derive(Default)]
struct SubOutcome {
    streams: Vec<(u32, StreamTracker)>,
    stray: u64,
    unexpected: u64,
    latencies_ns: Vec<u64>,
    error: Option<String>,
}

#[derive(Default)]
struct PubOutcome {
    stalls: u64,
    acks_out_of_order: u64,
    unexpected: u64,
    error: Option<String>,
}

pub async fn run(addrs: Arc<Addrs>, topo: Topology, params: FlowParams) -> Result<FlowResult> {
    let setup_start = Instant::now();
    let n_pubs = topo.pub_topics.len();
    let n_subs = topo.sub_filters.len();
    if topo.routes.len() != n_pubs {
        bail!("topology: one route list per publisher");
    }

    // Delivery counters: one per (publisher, subscriber) route.
    let mut sub_streams: Vec<Vec<Option<SubStream>>> = (0..n_subs)
        .map(|_| (0..n_pubs).map(|_| None).collect())
        .collect();
    let mut pubs = Vec::with_capacity(n_pubs);
    for (p, route) in topo.routes.iter().enumerate() {
        let mut delivered = Vec::with_capacity(route.len());
        for &s in route {
            let counter = Arc::new(AtomicU64::new(0));
            delivered.push(counter.clone());
            sub_streams[s][p] = Some(SubStream {
                tracker: StreamTracker::default(),
                delivered: counter,
                dirty: false,
            });
        }
        pubs.push(Arc::new(PubShared {
            notify: Notify::new(),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            delivered,
            delivered_wake_at: AtomicU64::new(u64::MAX),
            acked_wake_at: AtomicU64::new(u64::MAX),
            closing: AtomicBool::new(false),
        }));
    }
    let pubs = Arc::new(pubs);

    // Encoded before anything connects, so a bad payload size fails first.
    let qos = params.qos;
    let templates = topo
        .pub_topics
        .iter()
        .map(|t| PublishTemplate::new(t, qos, params.payload))
        .collect::<Result<Vec<_>>>()?;

    // Subscribers first, each subscribed before any publisher starts.
    let subs = client::bounded(n_subs, params.connect_concurrency, |i| {
        let addrs = addrs.clone();
        let filter = topo.sub_filters[i].clone();
        let id = format!("{}-s{i}", params.tag);
        let persistent = params.persistent;
        async move {
            let mut conn = Conn::connect_with(&addrs, &id, !persistent).await?;
            conn.subscribe(&filter, qos).await?;
            Ok(conn)
        }
    })
    .await;
    let subs = collect_all(subs, "subscriber")?;
    let publishers = client::bounded(n_pubs, params.connect_concurrency, |i| {
        let addrs = addrs.clone();
        let id = format!("{}-p{i}", params.tag);
        async move { Conn::connect(&addrs, &id).await }
    })
    .await;
    let publishers = collect_all(publishers, "publisher")?;
    let setup_secs = setup_start.elapsed().as_secs_f64();

    let epoch = Instant::now();
    let clock = Clock {
        epoch,
        warmup_end: epoch + params.warmup,
        deadline: epoch + params.duration,
        drain_deadline: epoch + params.duration + params.drain,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let sub_totals: Vec<Arc<AtomicU64>> =
        (0..n_subs).map(|_| Arc::new(AtomicU64::new(0))).collect();

    let mut sub_tasks = Vec::with_capacity(n_subs);
    for ((conn, streams), total) in subs.into_iter().zip(sub_streams).zip(&sub_totals) {
        sub_tasks.push(tokio::spawn(subscriber(
            conn,
            streams,
            pubs.clone(),
            total.clone(),
            qos,
            stop_rx.clone(),
            params.record_latency.then_some(clock),
        )));
    }
    let mut pub_tasks = Vec::with_capacity(n_pubs);
    for (p, (conn, template)) in publishers.into_iter().zip(templates).enumerate() {
        pub_tasks.push(tokio::spawn(publisher(
            u32::try_from(p)?,
            conn,
            template,
            pubs[p].clone(),
            params.clone(),
            clock,
        )));
    }

    // The measured window.
    let sum = |v: &[Arc<AtomicU64>]| v.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>();
    let sent_sum = || {
        pubs.iter()
            .map(|p| p.sent.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let mut result = FlowResult {
        setup_secs,
        ..FlowResult::default()
    };
    if params.messages.is_none() {
        sleep_until(clock.warmup_end.into()).await;
        let (d0, s0, t0) = (sum(&sub_totals), sent_sum(), Instant::now());
        sleep_until(clock.deadline.into()).await;
        let (d1, s1, t1) = (sum(&sub_totals), sent_sum(), Instant::now());
        result.delivered_in_window = d1 - d0;
        result.sent_in_window = s1 - s0;
        result.window_secs = (t1 - t0).as_secs_f64();
    }

    for (p, task) in pub_tasks.into_iter().enumerate() {
        match task.await {
            Ok(o) => {
                result.stalls += o.stalls;
                result.acks_out_of_order += o.acks_out_of_order;
                result.unexpected_packets += o.unexpected;
                if let Some(e) = o.error {
                    result.errors.push(format!("publisher {p}: {e}"));
                }
            }
            Err(e) => result.errors.push(format!("publisher {p} task: {e}")),
        }
    }

    // Let the last messages arrive, up to the drain deadline.
    let expected_unique = |p: &PubShared| p.sent.load(Ordering::Relaxed) * p.delivered.len() as u64;
    loop {
        let missing = pubs.iter().any(|p| {
            p.delivered
                .iter()
                .map(|d| d.load(Ordering::Relaxed))
                .sum::<u64>()
                < expected_unique(p)
        });
        if !missing || Instant::now() >= clock.drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if params.messages.is_some() {
        // The whole run is the measured window.
        result.delivered_in_window = sum(&sub_totals);
        result.sent_in_window = sent_sum();
        result.window_secs = epoch.elapsed().as_secs_f64();
    }
    let _ = stop_tx.send(true);

    let mut reports: Vec<PublisherReport> = pubs
        .iter()
        .enumerate()
        .map(|(p, shared)| PublisherReport {
            id: u32::try_from(p).unwrap_or(u32::MAX),
            sent: shared.sent.load(Ordering::Relaxed),
            acked: shared.acked.load(Ordering::Relaxed),
            expected: expected_unique(shared),
            ..PublisherReport::default()
        })
        .collect();
    for (s, task) in sub_tasks.into_iter().enumerate() {
        match task.await {
            Ok(o) => {
                for (p, tracker) in &o.streams {
                    if let Some(r) = reports.get_mut(*p as usize) {
                        r.add_stream(tracker);
                    }
                }
                result.stray += o.stray;
                result.unexpected_packets += o.unexpected;
                result.latencies_ns.extend(o.latencies_ns);
                if let Some(e) = o.error {
                    result.errors.push(format!("subscriber {s}: {e}"));
                }
            }
            Err(e) => result.errors.push(format!("subscriber {s} task: {e}")),
        }
    }
    result.publishers = reports;
    Ok(result)
}

fn collect_all<T>(results: Vec<Result<T>>, what: &str) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(results.len());
    let mut failed = 0;
    let mut first = None;
    for r in results {
        match r {
            Ok(v) => out.push(v),
            Err(e) => {
                failed += 1;
                first.get_or_insert(e);
            }
        }
    }
    match first {
        None => Ok(out),
        Some(e) => Err(anyhow!(
            "{failed} of {} {what}s could not connect; first: {e:#}",
            out.len() + failed
        )),
    }
}

async fn subscriber(
    conn: Conn,
    mut streams: Vec<Option<SubStream>>,
    pubs: Arc<Vec<Arc<PubShared>>>,
    total: Arc<AtomicU64>,
    qos: QoS,
    mut stop: watch::Receiver<bool>,
    latency: Option<Clock>,
) -> SubOutcome {
    let Conn {
        mut stream,
        mut rbuf,
    } = conn;
    let mut out = SubOutcome::default();
    let mut acks = BytesMut::with_capacity(4096);
    let mut dirty: Vec<usize> = Vec::new();
    'run: loop {
        rbuf.reserve(64 * 1024);
        tokio::select! {
            r = stream.read_buf(&mut rbuf) => match r {
                Ok(0) => { out.error = Some("connection closed by the broker".into()); break 'run; }
                Ok(_) => {}
                Err(e) => { out.error = Some(format!("read: {e}")); break 'run; }
            },
            _ = stop.changed() => break 'run,
        }
        let now_ns = latency.map(|c| c.ns(Instant::now()));
        loop {
            let packet = match fogg_codec::decode(&mut rbuf, VERSION, MAX_PACKET) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(format!("malformed packet from the broker: {e}"));
                    break 'run;
                }
            };
            match packet {
                Packet::Publish(p) => {
                    total.fetch_add(1, Ordering::Relaxed);
                    match Stamp::read(&p.payload) {
                        Some(stamp) => {
                            match streams.get_mut(stamp.publisher as usize) {
                                Some(Some(s)) => {
                                    s.tracker.record(stamp.seq);
                                    if !s.dirty {
                                        s.dirty = true;
                                        dirty.push(stamp.publisher as usize);
                                    }
                                }
                                _ => out.stray += 1,
                            }
                            if let (Some(clock), Some(now)) = (latency, now_ns) {
                                let sent = stamp.sent_ns;
                                if sent >= clock.ns(clock.warmup_end)
                                    && sent < clock.ns(clock.deadline)
                                {
                                    out.latencies_ns.push(now.saturating_sub(sent));
                                }
                            }
                        }
                        None => out.stray += 1,
                    }
                    if let Some(id) = p.packet_id {
                        let ack = match qos {
                            QoS::AtLeastOnce => Packet::PubAck(PubAck::new(id)),
                            _ => Packet::PubRec(PubAck::new(id)),
                        };
                        let _ = client::put(&ack, &mut acks);
                    }
                }
                Packet::PubRel(rel) => {
                    let _ = client::put(&Packet::PubComp(PubAck::new(rel.packet_id)), &mut acks);
                }
                _ => out.unexpected += 1,
            }
        }
        for p in dirty.drain(..) {
            if let Some(Some(s)) = streams.get_mut(p) {
                s.dirty = false;
                // SeqCst pairs with the publisher's store of its threshold
                // and its load of `delivered`: one of the two sides sees the
                // other, so no wake-up is lost.
                s.delivered.store(s.tracker.unique, Ordering::SeqCst);
                if s.tracker.unique >= pubs[p].delivered_wake_at.load(Ordering::SeqCst) {
                    pubs[p].notify.notify_one();
                }
            }
        }
        if !acks.is_empty() {
            if let Err(e) = write_out(&mut stream, &acks).await {
                out.error = Some(format!("write: {e}"));
                break 'run;
            }
            acks.clear();
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut buf = BytesMut::new();
        let _ = client::put(&client::disconnect_packet(), &mut buf);
        let _ = write_out(&mut stream, &buf).await;
        let _ = stream.shutdown().await;
    })
    .await;
    out.streams = streams
        .into_iter()
        .enumerate()
        .filter_map(|(p, s)| s.map(|s| (u32::try_from(p).unwrap_or(u32::MAX), s.tracker)))
        .collect();
    out
}

#[derive(Default)]
struct AckStats {
    out_of_order: u64,
    unexpected: u64,
    error: Option<String>,
}

/// Reads PUBACK (QoS 1) or PUBREC/PUBCOMP (QoS 2) for a publisher; PUBRECs
/// are handed to the writer, which answers them with PUBREL.
async fn ack_reader(
    mut rd: ReadHalf,
    mut rbuf: BytesMut,
    shared: Arc<PubShared>,
    qos: QoS,
    rel_tx: mpsc::UnboundedSender<u16>,
) -> AckStats {
    let mut stats = AckStats::default();
    // Acks complete in publish order; the next expected completion and PUBREC.
    let mut next_done: u64 = 0;
    let mut next_rec: u64 = 0;
    loop {
        loop {
            let packet = match fogg_codec::decode(&mut rbuf, VERSION, MAX_PACKET) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    stats.error = Some(format!("malformed packet from the broker: {e}"));
                    return stats;
                }
            };
            match (qos, packet) {
                (QoS::AtLeastOnce, Packet::PubAck(a)) | (QoS::ExactlyOnce, Packet::PubComp(a)) => {
                    if a.packet_id != packet_id(next_done) {
                        stats.out_of_order += 1;
                    }
                    next_done += 1;
                    shared.acked.store(next_done, Ordering::SeqCst);
                }
                (QoS::ExactlyOnce, Packet::PubRec(a)) => {
                    if a.packet_id != packet_id(next_rec) {
                        stats.out_of_order += 1;
                    }
                    next_rec += 1;
                    let _ = rel_tx.send(a.packet_id);
                }
                _ => stats.unexpected += 1,
            }
        }
        if next_done >= shared.acked_wake_at.load(Ordering::SeqCst) {
            shared.notify.notify_one();
        }
        rbuf.reserve(16 * 1024);
        match rd.read_buf(&mut rbuf).await {
            Ok(0) => {
                if !shared.closing.load(Ordering::Relaxed) {
                    stats.error = Some("connection closed by the broker".into());
                }
                return stats;
            }
            Ok(_) => {}
            Err(e) => {
                if !shared.closing.load(Ordering::Relaxed) {
                    stats.error = Some(format!("read: {e}"));
                }
                return stats;
            }
        }
    }
}

async fn publisher(
    id: u32,
    conn: Conn,
    template: PublishTemplate,
    shared: Arc<PubShared>,
    params: FlowParams,
    clock: Clock,
) -> PubOutcome {
    let Conn { stream, rbuf } = conn;
    let (rd, mut wr) = stream.into_split();
    let (rel_tx, mut rel_rx) = mpsc::unbounded_channel::<u16>();
    // Held so the channel never closes under the writer (a closed channel's
    // `recv` is always ready, which would turn its waits into a busy loop).
    let _rel_keep = rel_tx.clone();
    let qos = params.qos;
    let reader = (qos != QoS::AtMostOnce)
        .then(|| tokio::spawn(ack_reader(rd, rbuf, shared.clone(), qos, rel_tx)));

    let mut out = PubOutcome::default();
    let r = match params.mode {
        Mode::ClosedLoop {
            inflight,
            window,
            batch,
        } => {
            closed_loop(
                id,
                &mut wr,
                &template,
                &shared,
                &mut rel_rx,
                &params,
                clock,
                (inflight, window, batch),
                &mut out,
            )
            .await
        }
        Mode::OpenLoop { rate } => {
            open_loop(
                id,
                &mut wr,
                &template,
                &shared,
                &mut rel_rx,
                &params,
                clock,
                rate,
            )
            .await
        }
    };
    if let Err(e) = r {
        out.error = Some(format!("{e:#}"));
    }
    shared.closing.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut buf = BytesMut::new();
        let _ = client::put(&client::disconnect_packet(), &mut buf);
        let _ = write_out(&mut wr, &buf).await;
        let _ = wr.shutdown().await;
    })
    .await;
    if let Some(reader) = reader {
        match tokio::time::timeout(Duration::from_secs(2), reader).await {
            Ok(Ok(stats)) => {
                out.acks_out_of_order += stats.out_of_order;
                out.unexpected += stats.unexpected;
                if out.error.is_none() {
                    out.error = stats.error;
                }
            }
            Ok(Err(e)) => out.error = Some(format!("ack reader: {e}")),
            Err(_) => {} // the broker did not close after DISCONNECT; dropped.
        }
    }
    out
}

/// Writes `buf` and flushes it: a no-op on TCP; TLS and WebSocket streams
/// may hold written bytes until flushed.
async fn write_out<W: AsyncWrite + Unpin>(w: &mut W, buf: &[u8]) -> std::io::Result<()> {
    w.write_all(buf).await?;
    w.flush().await
}

fn put_pubrels(rel_rx: &mut mpsc::UnboundedReceiver<u16>, buf: &mut BytesMut) -> Result<()> {
    while let Ok(pid) = rel_rx.try_recv() {
        client::put(&Packet::PubRel(PubAck::new(pid)), buf)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn closed_loop(
    id: u32,
    wr: &mut WriteHalf,
    template: &PublishTemplate,
    shared: &PubShared,
    rel_rx: &mut mpsc::UnboundedReceiver<u16>,
    params: &FlowParams,
    clock: Clock,
    (inflight, window, batch): (u32, u32, u32),
    out: &mut PubOutcome,
) -> Result<()> {
    let qos = params.qos;
    let window = u64::from(window);
    let inflight = u64::from(inflight);
    let mut buf = BytesMut::with_capacity(template.len() * batch as usize + 64);
    let mut seq: u64 = 0;
    // End-to-end window bookkeeping.
    let mut written_off: u64 = 0;
    let mut last_min = 0u64;
    let mut last_progress = Instant::now();
    // Send only once a fair part of the windows is free: waking for every
    // single freed slot would make the generator pay a write per message.
    let mut min_send = u64::from(batch).min((window / 2).max(1));
    if qos != QoS::AtMostOnce {
        min_send = min_send.min((inflight / 2).max(1));
    }
    let limit = params.messages.unwrap_or(u64::MAX);
    // Deadlines and stalls are noticed on a coarse tick rather than a timer
    // armed for every wait.
    let mut tick = tokio::time::interval(
        (params.stall / 4).clamp(Duration::from_millis(1), Duration::from_millis(25)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        buf.clear();
        put_pubrels(rel_rx, &mut buf)?;
        let now = Instant::now();
        let sending = now < clock.deadline && seq < limit;
        // What a wait must be woken by: deliveries reaching `need_delivered`
        // (end-to-end window) and acks reaching `need_acked`.
        let mut need_delivered = u64::MAX;
        let mut need_acked = u64::MAX;
        if sending {
            // The last messages of a fixed count may be fewer than min_send.
            let min_send = min_send.min(limit - seq);
            let acked = shared.acked.load(Ordering::SeqCst);
            let ack_room = if qos == QoS::AtMostOnce {
                u64::MAX
            } else {
                inflight.saturating_sub(seq - acked)
            };
            let min = shared.min_delivered();
            if min != last_min {
                last_min = min;
                last_progress = now;
            }
            let mut outstanding = seq.saturating_sub(written_off).saturating_sub(min);
            if window.saturating_sub(outstanding) >= min_send {
                // The stall clock only runs while the window holds us back.
                last_progress = now;
            } else if now - last_progress >= params.stall {
                written_off += outstanding;
                outstanding = 0;
                out.stalls += 1;
                last_progress = now;
            }
            let e2e_room = window.saturating_sub(outstanding);
            let n = ack_room
                .min(e2e_room)
                .min(u64::from(batch))
                .min(limit - seq);
            if n >= min_send {
                let sent_ns = clock.ns(now);
                for _ in 0..n {
                    template.put(
                        Stamp {
                            publisher: id,
                            seq,
                            sent_ns,
                        },
                        &mut buf,
                    );
                    seq += 1;
                }
            } else if e2e_room < min_send {
                // Wait until the slowest subscriber has caught up enough.
                need_delivered = (seq - written_off + min_send).saturating_sub(window);
            } else {
                need_acked = (seq + min_send).saturating_sub(inflight);
            }
        }
        if !buf.is_empty() {
            write_out(wr, &buf).await?;
            shared.sent.store(seq, Ordering::Relaxed);
            continue;
        }
        if !sending {
            let done = qos == QoS::AtMostOnce || shared.acked.load(Ordering::SeqCst) >= seq;
            if done || now >= clock.drain_deadline {
                return Ok(());
            }
            need_acked = seq;
        }
        // Publish the thresholds, then look once more: a delivery or ack
        // that landed in between is seen here, or it sees the threshold.
        shared
            .delivered_wake_at
            .store(need_delivered, Ordering::SeqCst);
        shared.acked_wake_at.store(need_acked, Ordering::SeqCst);
        if shared.min_delivered() >= need_delivered
            || shared.acked.load(Ordering::SeqCst) >= need_acked
        {
            continue;
        }
        tokio::select! {
            _ = shared.notify.notified() => {}
            pid = rel_rx.recv() => {
                if let Some(pid) = pid {
                    buf.clear();
                    client::put(&Packet::PubRel(PubAck::new(pid)), &mut buf)?;
                    put_pubrels(rel_rx, &mut buf)?;
                    write_out(wr, &buf).await?;
                }
            }
            _ = tick.tick() => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn open_loop(
    id: u32,
    wr: &mut WriteHalf,
    template: &PublishTemplate,
    shared: &PubShared,
    rel_rx: &mut mpsc::UnboundedReceiver<u16>,
    params: &FlowParams,
    clock: Clock,
    rate: u64,
) -> Result<()> {
    let qos = params.qos;
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let mut buf = BytesMut::with_capacity(template.len() + 64);
    let mut seq: u64 = 0;
    let mut due = clock.epoch;
    loop {
        let now = Instant::now();
        if now >= clock.deadline {
            break;
        }
        while due <= now && due < clock.deadline {
            // Never more than 60000 unacknowledged: packet ids must stay unique.
            if qos != QoS::AtMostOnce && seq - shared.acked.load(Ordering::Relaxed) >= 60_000 {
                break;
            }
            buf.clear();
            put_pubrels(rel_rx, &mut buf)?;
            template.put(
                Stamp {
                    publisher: id,
                    seq,
                    sent_ns: clock.ns(Instant::now()),
                },
                &mut buf,
            );
            write_out(wr, &buf).await?;
            seq += 1;
            shared.sent.store(seq, Ordering::Relaxed);
            due += interval;
        }
        buf.clear();
        put_pubrels(rel_rx, &mut buf)?;
        if !buf.is_empty() {
            write_out(wr, &buf).await?;
        }
        let wake = due.max(Instant::now() + Duration::from_micros(100));
        tokio::select! {
            pid = rel_rx.recv() => {
                if let Some(pid) = pid {
                    buf.clear();
                    client::put(&Packet::PubRel(PubAck::new(pid)), &mut buf)?;
                    write_out(wr, &buf).await?;
                }
            }
            _ = sleep_until(wake.min(clock.deadline).into()) => {}
        }
    }
    // Wait for the last acknowledgements.
    shared.acked_wake_at.store(seq, Ordering::SeqCst);
    while qos != QoS::AtMostOnce
        && shared.acked.load(Ordering::Relaxed) < seq
        && Instant::now() < clock.drain_deadline
    {
        buf.clear();
        put_pubrels(rel_rx, &mut buf)?;
        if !buf.is_empty() {
            write_out(wr, &buf).await?;
        }
        tokio::select! {
            _ = shared.notify.notified() => {}
            pid = rel_rx.recv() => {
                if let Some(pid) = pid {
                    buf.clear();
                    client::put(&Packet::PubRel(PubAck::new(pid)), &mut buf)?;
                    write_out(wr, &buf).await?;
                }
            }
            _ = sleep_until(clock.drain_deadline.into()) => {}
        }
    }
    Ok(())
}
