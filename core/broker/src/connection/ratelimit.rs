//! Per-client publish rate limit (messages/s and bytes/s).
//!
//! A generic cell rate algorithm per measure: each PUBLISH moves a
//! theoretical arrival time forward by its cost; while that time is in the
//! future the connection stops reading its socket, so a flooding client is
//! slowed by TCP back-pressure and none of its messages is dropped. A burst
//! of [`BURST`] worth of the rate is allowed first.

use std::time::Duration;

use tokio::time::Instant;

/// How much of the rate a client may send at once before it is slowed.
const BURST: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateSettings {
    /// PUBLISH packets per second; 0 = unlimited.
    pub messages: u32,
    /// PUBLISH bytes (topic and payload) per second; 0 = unlimited.
    pub bytes: u64,
}

#[derive(Debug)]
pub(crate) struct RateLimit {
    messages: Option<Cell>,
    bytes: Option<Cell>,
}

#[derive(Debug)]
struct Cell {
    /// Time one unit costs.
    per_unit: Duration,
    /// Theoretical arrival time: when the client is within its rate again.
    tat: Instant,
}

impl Cell {
    fn new(rate: u64, now: Instant) -> Option<Cell> {
        (rate > 0).then(|| Cell {
            per_unit: Duration::from_secs_f64(1.0 / rate as f64),
            // A new client may send its burst at once.
            tat: now.checked_sub(BURST).unwrap_or(now),
        })
    }

    fn charge(&mut self, now: Instant, units: u64) {
        let start = self.tat.max(now.checked_sub(BURST).unwrap_or(now));
        let cost = self
            .per_unit
            .saturating_mul(u32::try_from(units).unwrap_or(u32::MAX));
        self.tat = start + cost;
    }
}

impl RateLimit {
    /// `None` when neither measure is limited.
    pub fn new(settings: RateSettings) -> Option<RateLimit> {
        let now = Instant::now();
        let limit = RateLimit {
            messages: Cell::new(u64::from(settings.messages), now),
            bytes: Cell::new(settings.bytes, now),
        };
        (limit.messages.is_some() || limit.bytes.is_some()).then_some(limit)
    }

    /// Count one PUBLISH of `bytes` bytes.
    pub fn charge(&mut self, bytes: usize) {
        let now = Instant::now();
        if let Some(cell) = &mut self.messages {
            cell.charge(now, 1);
        }
        if let Some(cell) = &mut self.bytes {
            cell.charge(now, bytes as u64);
        }
    }

    /// When reading may resume; `None` when the client is within its rate.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        let tat = match (&self.messages, &self.bytes) {
            (Some(m), Some(b)) => m.tat.max(b.tat),
            (Some(c), None) | (None, Some(c)) => c.tat,
            (None, None) => return None,
        };
        (tat > now).then_some(tat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_is_none() {
        assert!(
            RateLimit::new(RateSettings {
                messages: 0,
                bytes: 0
            })
            .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_a_pause_proportional_to_the_excess() {
        let mut limit = RateLimit::new(RateSettings {
            messages: 10,
            bytes: 0,
        })
        .unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        // One second's worth (10) passes without a pause.
        for _ in 0..10 {
            limit.charge(1);
        }
        assert_eq!(limit.paused_until(Instant::now()), None);
        // Ten more: about one second of pause.
        for _ in 0..10 {
            limit.charge(1);
        }
        let until = limit.paused_until(Instant::now()).unwrap();
        let pause = until - Instant::now();
        assert!(
            pause > Duration::from_millis(900) && pause <= Duration::from_secs(1),
            "{pause:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_are_limited_too() {
        let mut limit = RateLimit::new(RateSettings {
            messages: 0,
            bytes: 1000,
        })
        .unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        limit.charge(3000);
        let pause = limit.paused_until(Instant::now()).unwrap() - Instant::now();
        assert_eq!(pause, Duration::from_secs(2));
    }
}
