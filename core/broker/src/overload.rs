//! Load shedding: an atomic count of the bytes waiting in session queues,
//! the process's resident memory read now and then, and the overload flag
//! they raise past a high watermark and lower below a low one (hysteresis).
//!
//! The hot path pays one relaxed atomic add when a message is queued and one
//! subtract when it leaves memory (a [`Charge`] dropped), and only when
//! `[overload] queued_bytes_high` is set. No lock is taken per message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::OverloadSettings;

pub(crate) struct Overload {
    queued: AtomicU64,
    queued_high: u64,
    queued_low: u64,
    rss_high: u64,
    rss_low: u64,
    check_interval: Duration,
    queue_pressure: AtomicBool,
    rss_pressure: AtomicBool,
    /// Last resident memory read, in bytes (0: not read).
    rss: AtomicU64,
    /// New connections refused because the broker was overloaded.
    pub refused: AtomicU64,
    /// QoS 0 messages not queued for slow consumers while overloaded.
    pub shed_qos0: AtomicU64,
    /// Times a client's reader was paused by its publish rate limit.
    pub rate_pauses: AtomicU64,
    /// New connections refused by `max_connections` (global or listener).
    pub over_cap: AtomicU64,
}

/// Bytes of one delivery held in memory; released when dropped. A clone
/// (the copy an inflight window keeps) counts again.
#[derive(Debug)]
pub(crate) struct Charge {
    load: Arc<Overload>,
    bytes: u64,
}

impl Clone for Charge {
    fn clone(&self) -> Self {
        self.load.add(self.bytes);
        Charge {
            load: self.load.clone(),
            bytes: self.bytes,
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.load.sub(self.bytes);
    }
}

impl std::fmt::Debug for Overload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overload")
            .field("queued", &self.queued_bytes())
            .field("overloaded", &self.is_overloaded())
            .finish()
    }
}

impl Overload {
    pub fn new(settings: &OverloadSettings) -> Overload {
        Overload {
            queued: AtomicU64::new(0),
            queued_high: settings.queued_bytes_high,
            queued_low: settings.queued_low(),
            rss_high: settings.rss_high,
            rss_low: settings.rss_low_in_force(),
            check_interval: settings.check_interval,
            queue_pressure: AtomicBool::new(false),
            rss_pressure: AtomicBool::new(false),
            rss: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            shed_qos0: AtomicU64::new(0),
            rate_pauses: AtomicU64::new(0),
            over_cap: AtomicU64::new(0),
        }
    }

    /// Whether new connections are refused and QoS 0 to slow consumers shed.
    pub fn is_overloaded(&self) -> bool {
        self.queue_pressure.load(Ordering::Relaxed) || self.rss_pressure.load(Ordering::Relaxed)
    }

    /// Bytes queued in memory (counted only when `queued_bytes_high` is set).
    pub fn queued_bytes(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// The resident memory last read (0 when `rss_high` is not set).
    pub fn rss_bytes(&self) -> u64 {
        self.rss.load(Ordering::Relaxed)
    }

    /// Count `bytes` as queued until the returned charge is dropped.
    pub fn charge(self: &Arc<Self>, bytes: u64) -> Option<Charge> {
        if self.queued_high == 0 {
            return None;
        }
        self.add(bytes);
        Some(Charge {
            load: self.clone(),
            bytes,
        })
    }

    fn add(&self, bytes: u64) {
        let now = self.queued.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if now > self.queued_high
            && !self.queue_pressure.load(Ordering::Relaxed)
            && self
                .queue_pressure
                .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                queued_bytes = now,
                high = self.queued_high,
                "overloaded: queued messages past queued_bytes_high; refusing new connections and shedding QoS 0 to slow consumers"
            );
        }
    }

    fn sub(&self, bytes: u64) {
        let now = self
            .queued
            .fetch_sub(bytes, Ordering::Relaxed)
            .saturating_sub(bytes);
        if now <= self.queued_low
            && self.queue_pressure.load(Ordering::Relaxed)
            && self
                .queue_pressure
                .compare_exchange(true, false, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::info!(
                queued_bytes = now,
                low = self.queued_low,
                "queue pressure over: queued messages below queued_bytes_low"
            );
        }
    }

    /// Read the resident memory every `check_interval` and raise or lower
    /// the memory pressure; returns at once when `rss_high` is not set.
    pub async fn watch_rss(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if self.rss_high == 0 {
            return;
        }
        let mut ticker = tokio::time::interval(self.check_interval);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticker.tick() => {}
            }
            let Some(rss) = read_rss() else {
                tracing::warn!(
                    "[overload] rss_high is set but the resident memory cannot be read (/proc/self/status); memory watermarks are off"
                );
                return;
            };
            self.rss.store(rss, Ordering::Relaxed);
            let pressed = self.rss_pressure.load(Ordering::Relaxed);
            if !pressed && rss > self.rss_high {
                self.rss_pressure.store(true, Ordering::Relaxed);
                tracing::warn!(
                    rss,
                    high = self.rss_high,
                    "overloaded: resident memory past rss_high; refusing new connections and shedding QoS 0 to slow consumers"
                );
            } else if pressed && rss <= self.rss_low {
                self.rss_pressure.store(false, Ordering::Relaxed);
                tracing::info!(
                    rss,
                    low = self.rss_low,
                    "memory pressure over: resident memory below rss_low"
                );
            }
        }
    }
}

/// The process's resident set size in bytes (Linux `/proc/self/status`).
fn read_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(high: u64, low: u64) -> OverloadSettings {
        OverloadSettings {
            queued_bytes_high: high,
            queued_bytes_low: low,
            ..OverloadSettings::default()
        }
    }

    #[test]
    fn hysteresis_between_the_watermarks() {
        let load = Arc::new(Overload::new(&settings(100, 40)));
        let a = load.charge(60);
        assert!(!load.is_overloaded());
        let b = load.charge(60);
        assert!(load.is_overloaded(), "120 > 100");
        drop(a);
        assert!(load.is_overloaded(), "60 is still above the low watermark");
        let c = b.clone();
        drop(b);
        assert!(load.is_overloaded(), "the clone still holds 60");
        drop(c);
        assert!(!load.is_overloaded());
        assert_eq!(load.queued_bytes(), 0);
    }

    #[test]
    fn nothing_is_counted_without_a_watermark() {
        let load = Arc::new(Overload::new(&settings(0, 0)));
        assert!(load.charge(1_000_000).is_none());
        assert_eq!(load.queued_bytes(), 0);
        assert!(!load.is_overloaded());
    }

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tfogg\nVmPeak:\t 1 kB\nVmRSS:\t   2048 kB\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }
}
