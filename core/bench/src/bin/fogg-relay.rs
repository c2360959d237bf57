//! fogg-relay: a minimal MQTT forwarder, the ceiling a broker could reach on
//! this machine (see core/bench/README.md).
//!
//! `fogg-relay --listen 127.0.0.1:PORT`. It answers CONNECT (CONNACK),
//! SUBSCRIBE (SUBACK granting the requested QoS), PINGREQ and DISCONNECT;
//! acknowledges a publisher's QoS 1 PUBLISH with PUBACK and a QoS 2 one with
//! PUBREC (PUBCOMP on PUBREL) at once; and copies each PUBLISH's bytes
//! unchanged to every connection with a matching filter (`+`, `#`, else an
//! exact match), one copy per matching subscription. No sessions, retained
//! messages, checks or auth; PUBACK/PUBREC/PUBCOMP from subscribers are
//! ignored. MQTT 3.1, 3.1.1 and 5 framing (v5 properties are skipped).
//!
//! One task reads each connection and forwards what it reads; one task
//! writes it, draining a bounded channel of frames into one write. A full
//! channel makes the forwarding reader wait (back-pressure), so nothing is
//! dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use fogg_codec::topic;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{self, Sender, error::TrySendError};

/// Frames queued towards one connection before forwarders wait.
const QUEUE: usize = 4096;
/// Largest packet accepted; a bigger one closes the connection.
const MAX_PACKET: usize = 1 << 20;
/// Most bytes gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "fogg-relay",
    version,
    about = "Minimal MQTT forwarder (a benchmark ceiling)"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:1883")]
    listen: SocketAddr,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fogg-relay: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::bind(cli.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("fogg-relay: cannot listen on {}: {e}", cli.listen);
                return ExitCode::from(1);
            }
        };
        tokio::select! {
            () = serve(listener) => ExitCode::SUCCESS,
            _ = shutdown_signal() => ExitCode::SUCCESS,
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Accepts connections until the listener fails.
async fn serve(listener: TcpListener) {
    let registry = Arc::new(Registry::default());
    let ids = AtomicU64::new(0);
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            // Out of file descriptors and the like: keep serving the others.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection(stream, id, registry.clone()));
    }
}

struct Entry {
    conn: u64,
    tx: Sender<Bytes>,
}

/// Every subscription: exact filters by topic, wildcard filters in a list.
#[derive(Default)]
struct Registry {
    subs: RwLock<Subs>,
}

#[derive(Default)]
struct Subs {
    exact: HashMap<Box<[u8]>, Vec<Entry>>,
    /// Kept as text: a filter that is not UTF-8 matches nothing.
    wild: Vec<(Box<str>, Entry)>,
}

impl Registry {
    fn add(&self, filter: &[u8], conn: u64, tx: &Sender<Bytes>) {
        let mut subs = self.subs.write().unwrap_or_else(PoisonError::into_inner);
        let entry = Entry {
            conn,
            tx: tx.clone(),
        };
        if filter.iter().any(|&b| b == b'+' || b == b'#') {
            if let Ok(filter) = std::str::from_utf8(filter) {
                subs.wild.push((filter.into(), entry));
            }
        } else {
            subs.exact.entry(filter.into()).or_default().push(entry);
        }
    }

    fn remove(&self, conn: u64, filters: &[Box<[u8]>]) {
        let mut subs = self.subs.write().unwrap_or_else(PoisonError::into_inner);
        for f in filters {
            if let Some(list) = subs.exact.get_mut(f) {
                list.retain(|e| e.conn != conn);
                if list.is_empty() {
                    subs.exact.remove(f);
                }
            }
        }
        subs.wild.retain(|(_, e)| e.conn != conn);
    }

    /// Queues `frame` for every matching subscription. Queues that are full
    /// are waited for after the lock is released, in order.
    async fn forward(&self, topic: &[u8], frame: &Bytes, blocked: &mut Vec<Sender<Bytes>>) {
        {
            let subs = self.subs.read().unwrap_or_else(PoisonError::into_inner);
            let mut push = |tx: &Sender<Bytes>| {
                if let Err(TrySendError::Full(_)) = tx.try_send(frame.clone()) {
                    blocked.push(tx.clone());
                }
            };
            if let Some(list) = subs.exact.get(topic) {
                list.iter().for_each(|e| push(&e.tx));
            }
            if !subs.wild.is_empty()
                && let Ok(topic) = std::str::from_utf8(topic)
            {
                for (filter, e) in &subs.wild {
                    if topic::matches(filter, topic) {
                        push(&e.tx);
                    }
                }
            }
        }
        for tx in blocked.drain(..) {
            // A closed queue is a subscriber that left: nothing to do.
            let _ = tx.send(frame.clone()).await;
        }
    }
}

/// Length of the fixed header and of the whole packet at the start of
/// `buf`: `Ok(None)` when more bytes are needed, `Err` when malformed.
fn frame_len(buf: &[u8]) -> Result<Option<(usize, usize)>, ()> {
    let mut len = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let header = 2 + i;
            return Ok(Some((header, header + len)));
        }
    }
    Err(())
}

/// A two-byte big-endian integer at `at`.
fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// A v5 property block at `at`: the offset just after it.
fn skip_properties(b: &[u8], at: usize) -> Option<usize> {
    let mut len = 0usize;
    for i in 0..4 {
        let byte = *b.get(at + i)?;
        len |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(at + i + 1 + len);
        }
    }
    None
}

/// What a connection knows about itself.
struct Conn {
    id: u64,
    /// Protocol level from CONNECT: 3 (3.1), 4 (3.1.1) or 5.
    level: u8,
    filters: Vec<Box<[u8]>>,
}

async fn connection(stream: TcpStream, id: u64, registry: Arc<Registry>) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let writer = tokio::spawn(writer(wr, rx));
    let mut conn = Conn {
        id,
        level: 4,
        filters: Vec::new(),
    };
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(1024);
    let mut blocked = Vec::new();
    'read: loop {
        rbuf.reserve(64 * 1024);
        match rd.read_buf(&mut rbuf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        loop {
            let (header, total) = match frame_len(&rbuf) {
                Ok(Some(lens)) => lens,
                Ok(None) => break,
                Err(()) => break 'read,
            };
            if total > MAX_PACKET {
                break 'read;
            }
            if rbuf.len() < total {
                break;
            }
            let frame = rbuf.split_to(total).freeze();
            match handle(
                &mut conn,
                &frame,
                header,
                &registry,
                &tx,
                &mut out,
                &mut blocked,
            )
            .await
            {
                Some(()) => {}
                None => break 'read,
            }
        }
        // This read's own answers (CONNACK, SUBACK, PUBACK...) in one frame.
        if !out.is_empty() && tx.send(out.split().freeze()).await.is_err() {
            break;
        }
    }
    if !out.is_empty() {
        let _ = tx.send(out.split().freeze()).await;
    }
    registry.remove(conn.id, &conn.filters);
    // The writer ends once every sender (ours, the registry's) is gone.
    drop(tx);
    let _ = writer.await;
}

/// One packet; `None` closes the connection (DISCONNECT or malformed).
async fn handle(
    conn: &mut Conn,
    frame: &Bytes,
    header: usize,
    registry: &Registry,
    tx: &Sender<Bytes>,
    out: &mut BytesMut,
    blocked: &mut Vec<Sender<Bytes>>,
) -> Option<()> {
    let kind = frame[0] >> 4;
    match kind {
        // CONNECT: protocol name, then the level.
        1 => {
            let name_len = usize::from(u16_at(frame, header)?);
            conn.level = *frame.get(header + 2 + name_len)?;
            if conn.level == 5 {
                out.put_slice(&[0x20, 3, 0, 0, 0]);
            } else {
                out.put_slice(&[0x20, 2, 0, 0]);
            }
        }
        // PUBLISH: topic, packet id when QoS > 0.
        3 => {
            let qos = (frame[0] >> 1) & 3;
            let topic_len = usize::from(u16_at(frame, header)?);
            let topic = frame.get(header + 2..header + 2 + topic_len)?;
            match qos {
                0 => {}
                1 | 2 => {
                    let pid = u16_at(frame, header + 2 + topic_len)?;
                    out.put_u8(if qos == 1 { 0x40 } else { 0x50 });
                    out.put_u8(2);
                    out.put_u16(pid);
                }
                _ => return None,
            }
            registry.forward(topic, frame, blocked).await;
        }
        // PUBREL (from a QoS 2 publisher, or a subscriber): PUBCOMP.
        6 => {
            let pid = u16_at(frame, header)?;
            out.put_slice(&[0x70, 2]);
            out.put_u16(pid);
        }
        // SUBSCRIBE: packet id, [v5 properties], then filter + options pairs.
        8 => {
            let pid = u16_at(frame, header)?;
            let mut at = header + 2;
            if conn.level == 5 {
                at = skip_properties(frame, at)?;
            }
            let mut granted = Vec::new();
            while at < frame.len() {
                let len = usize::from(u16_at(frame, at)?);
                let filter = frame.get(at + 2..at + 2 + len)?;
                let options = *frame.get(at + 2 + len)?;
                registry.add(filter, conn.id, tx);
                conn.filters.push(filter.into());
                granted.push((options & 3).min(2));
                at += 3 + len;
            }
            let props = usize::from(conn.level == 5);
            let remaining = 2 + props + granted.len();
            out.put_u8(0x90);
            put_remaining_length(out, remaining);
            out.put_u16(pid);
            if props == 1 {
                out.put_u8(0);
            }
            out.put_slice(&granted);
        }
        // PINGREQ.
        12 => out.put_slice(&[0xd0, 0]),
        // DISCONNECT.
        14 => return None,
        // PUBACK, PUBREC, PUBCOMP from subscribers, and anything else.
        _ => {}
    }
    Some(())
}

fn put_remaining_length(out: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = (len & 0x7f) as u8;
        len >>= 7;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

/// Drains the connection's queue into as few writes as possible.
async fn writer(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    let mut batch = Vec::with_capacity(256);
    let mut buf = BytesMut::with_capacity(WRITE_BATCH);
    while rx.recv_many(&mut batch, 256).await > 0 {
        if batch.len() == 1 {
            if let Some(frame) = batch.pop()
                && wr.write_all(&frame).await.is_err()
            {
                break;
            }
            continue;
        }
        for frame in batch.drain(..) {
            buf.extend_from_slice(&frame);
            if buf.len() >= WRITE_BATCH {
                if wr.write_all(&buf).await.is_err() {
                    return;
                }
                buf.clear();
            }
        }
        if !buf.is_empty() {
            if wr.write_all(&buf).await.is_err() {
                break;
            }
            buf.clear();
        }
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn start() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener));
        addr
    }

    /// Reads exactly `n` bytes, or fails after 5 s.
    async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        buf
    }

    fn connect(level: u8) -> Vec<u8> {
        let mut v = vec![0x10, 0];
        v.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 0]);
        if level == 5 {
            v.push(0); // no properties
        }
        v.extend_from_slice(&[0, 1, b'c']);
        v[1] = (v.len() - 2) as u8;
        v
    }

    fn subscribe(level: u8, pid: u16, filter: &str, qos: u8) -> Vec<u8> {
        let mut v = vec![0x82, 0];
        v.extend_from_slice(&pid.to_be_bytes());
        if level == 5 {
            v.push(0);
        }
        v.extend_from_slice(&(filter.len() as u16).to_be_bytes());
        v.extend_from_slice(filter.as_bytes());
        v.push(qos);
        v[1] = (v.len() - 2) as u8;
        v
    }

    fn publish(level: u8, topic: &str, qos: u8, pid: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x30 | (qos << 1), 0];
        v.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        v.extend_from_slice(topic.as_bytes());
        if qos > 0 {
            v.extend_from_slice(&pid.to_be_bytes());
        }
        if level == 5 {
            v.push(0);
        }
        v.extend_from_slice(payload);
        v[1] = (v.len() - 2) as u8;
        v
    }

    async fn client(addr: SocketAddr, level: u8) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&connect(level)).await.unwrap();
        let want: &[u8] = if level == 5 {
            &[0x20, 3, 0, 0, 0]
        } else {
            &[0x20, 2, 0, 0]
        };
        assert_eq!(read_n(&mut s, want.len()).await, want);
        s
    }

    #[tokio::test]
    async fn a_publish_reaches_the_subscriber_byte_for_byte() {
        let addr = start().await;
        for level in [4u8, 5] {
            let mut sub = client(addr, level).await;
            sub.write_all(&subscribe(level, 7, "t/+/x", 1))
                .await
                .unwrap();
            let suback: Vec<u8> = if level == 5 {
                vec![0x90, 4, 0, 7, 0, 1]
            } else {
                vec![0x90, 3, 0, 7, 1]
            };
            assert_eq!(read_n(&mut sub, suback.len()).await, suback);

            let mut publ = client(addr, level).await;
            let msg = publish(level, "t/a/x", 1, 42, b"hello");
            let other = publish(level, "t/a/y", 0, 0, b"not for you");
            publ.write_all(&other).await.unwrap();
            publ.write_all(&msg).await.unwrap();
            assert_eq!(read_n(&mut publ, 4).await, [0x40, 2, 0, 42]);
            assert_eq!(read_n(&mut sub, msg.len()).await, msg);

            // QoS 2: PUBREC, then PUBCOMP for PUBREL.
            let msg2 = publish(level, "t/b/x", 2, 43, b"twice");
            publ.write_all(&msg2).await.unwrap();
            assert_eq!(read_n(&mut publ, 4).await, [0x50, 2, 0, 43]);
            publ.write_all(&[0x62, 2, 0, 43]).await.unwrap();
            assert_eq!(read_n(&mut publ, 4).await, [0x70, 2, 0, 43]);
            assert_eq!(read_n(&mut sub, msg2.len()).await, msg2);

            // PINGREQ; the subscriber's PUBACK is ignored.
            sub.write_all(&[0x40, 2, 0, 42, 0xc0, 0]).await.unwrap();
            assert_eq!(read_n(&mut sub, 2).await, [0xd0, 0]);
            sub.write_all(&[0xe0, 0]).await.unwrap();
            publ.write_all(&[0xe0, 0]).await.unwrap();
        }
    }

    #[tokio::test]
    async fn garbage_closes_the_connection() {
        let addr = start().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        // A remaining length longer than four bytes.
        s.write_all(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01])
            .await
            .unwrap();
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
        // A truncated SUBSCRIBE.
        let mut s = client(addr, 4).await;
        s.write_all(&[0x82, 3, 0, 1, 0]).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
}
