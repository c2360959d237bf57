//! Counting every message: loss, duplicates and reordering.
//!
//! Each subscriber keeps one [`StreamTracker`] per publisher it hears from.
//! Sequence numbers are dense from 0, so a bitset of what arrived tells
//! duplicates exactly; a message whose sequence is below the highest one seen
//! so far (and not a duplicate) counts as reordered. Loss is what the
//! publisher sent (times the subscribers that should get it) minus the
//! distinct messages that arrived.

use serde_json::{Value, json};

/// Sequence numbers at or above this are counted as invalid instead of
/// growing the bitset without bound (no run here sends a quarter billion
/// messages from one publisher).
pub const MAX_SEQ: u64 = 1 << 28;

/// What one subscriber saw from one publisher.
#[derive(Debug, Default, Clone)]
pub struct StreamTracker {
    seen: Vec<u64>,
    max_seq: Option<u64>,
    /// Distinct messages.
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub invalid: u64,
}

/// How one arrival was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    InOrder,
    Reordered,
    Duplicate,
    Invalid,
}

impl StreamTracker {
    pub fn record(&mut self, seq: u64) -> Arrival {
        if seq >= MAX_SEQ {
            self.invalid += 1;
            return Arrival::Invalid;
        }
        // In range after the check above, so the casts cannot truncate.
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if word >= self.seen.len() {
            let grow = (word + 1).max(self.seen.len() * 2);
            self.seen.resize(grow, 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        match self.max_seq {
            Some(max) if seq < max => {
                self.reordered += 1;
                Arrival::Reordered
            }
            _ => {
                self.max_seq = Some(seq);
                Arrival::InOrder
            }
        }
    }
}

/// One publisher's accounting over all the subscribers that should hear it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PublisherReport {
    pub id: u32,
    /// PUBLISH packets written.
    pub sent: u64,
    /// Completed handshakes (PUBACK for QoS 1, PUBCOMP for QoS 2).
    pub acked: u64,
    /// `sent` times the number of subscribers that match.
    pub expected: u64,
    /// Distinct messages received over all matching subscribers.
    pub received: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub invalid: u64,
}

impl PublisherReport {
    /// Adds what one subscriber saw from this publisher.
    pub fn add_stream(&mut self, stream: &StreamTracker) {
        self.received += stream.unique;
        self.duplicates += stream.duplicates;
        self.reordered += stream.reordered;
        self.invalid += stream.invalid;
    }

    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    pub fn is_clean(&self) -> bool {
        self.lost() == 0 && self.duplicates == 0 && self.reordered == 0 && self.invalid == 0
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "sent": self.sent,
            "acked": self.acked,
            "expected": self.expected,
            "received": self.received,
            "lost": self.lost(),
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "invalid": self.invalid,
        })
    }
}

/// Totals over every publisher of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub sent: u64,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub invalid: u64,
    /// Publishers with any loss, duplicate, reordering or invalid message.
    pub unclean_publishers: usize,
}

impl Totals {
    pub fn of(publishers: &[PublisherReport]) -> Totals {
        let mut t = Totals::default();
        for p in publishers {
            t.sent += p.sent;
            t.expected += p.expected;
            t.received += p.received;
            t.lost += p.lost();
            t.duplicates += p.duplicates;
            t.reordered += p.reordered;
            t.invalid += p.invalid;
            if !p.is_clean() {
                t.unclean_publishers += 1;
            }
        }
        t
    }

    /// The accounting part of the human line.
    pub fn human(&self, publishers: &[PublisherReport]) -> String {
        let mut s = format!(
            "sent {} expected {} received {} lost {} dup {} reordered {}",
            self.sent, self.expected, self.received, self.lost, self.duplicates, self.reordered
        );
        if self.invalid > 0 {
            s.push_str(&format!(" invalid {}", self.invalid));
        }
        if self.unclean_publishers > 0 {
            // Name the worst few so a reader knows where to look.
            let mut worst: Vec<&PublisherReport> =
                publishers.iter().filter(|p| !p.is_clean()).collect();
            worst.sort_by_key(|p| {
                std::cmp::Reverse(p.lost() + p.duplicates + p.reordered + p.invalid)
            });
            let named: Vec<String> = worst
                .iter()
                .take(3)
                .map(|p| {
                    format!(
                        "pub {}: lost {} dup {} reord {}",
                        p.id,
                        p.lost(),
                        p.duplicates,
                        p.reordered
                    )
                })
                .collect();
            s.push_str(&format!(
                " ({} publishers affected; {})",
                self.unclean_publishers,
                named.join("; ")
            ));
        }
        s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "sent": self.sent,
            "expected": self.expected,
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "invalid": self.invalid,
            "unclean_publishers": self.unclean_publishers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_is_clean() {
        let mut t = StreamTracker::default();
        for s in 0..1000 {
            assert_eq!(t.record(s), Arrival::InOrder);
        }
        assert_eq!((t.unique, t.duplicates, t.reordered), (1000, 0, 0));
    }

    #[test]
    fn duplicates_reordering_and_gaps_are_told_apart() {
        let mut t = StreamTracker::default();
        assert_eq!(t.record(0), Arrival::InOrder);
        assert_eq!(t.record(2), Arrival::InOrder); // 1 is late
        assert_eq!(t.record(1), Arrival::Reordered);
        assert_eq!(t.record(2), Arrival::Duplicate);
        assert_eq!(t.record(1), Arrival::Duplicate);
        assert_eq!(t.record(500), Arrival::InOrder); // 3..500 lost
        assert_eq!(t.record(MAX_SEQ), Arrival::Invalid);
        assert_eq!(
            (t.unique, t.duplicates, t.reordered, t.invalid),
            (4, 2, 1, 1)
        );

        let mut p = PublisherReport {
            id: 3,
            sent: 501,
            expected: 501,
            ..Default::default()
        };
        p.add_stream(&t);
        assert_eq!(p.lost(), 497);
        assert!(!p.is_clean());
    }

    #[test]
    fn fan_out_accounting_sums_over_subscribers() {
        // One publisher, three subscribers: one complete, one missing the
        // last message, one with a duplicate.
        let sent = 10;
        let mut full = StreamTracker::default();
        let mut short = StreamTracker::default();
        let mut dup = StreamTracker::default();
        for s in 0..sent {
            full.record(s);
            if s + 1 < sent {
                short.record(s);
            }
            dup.record(s);
        }
        dup.record(4);
        let mut p = PublisherReport {
            id: 0,
            sent,
            expected: sent * 3,
            ..Default::default()
        };
        for s in [&full, &short, &dup] {
            p.add_stream(s);
        }
        assert_eq!(p.received, 29);
        assert_eq!(p.lost(), 1);
        assert_eq!(p.duplicates, 1);
        assert_eq!(p.reordered, 0);

        let clean = PublisherReport {
            id: 1,
            sent: 5,
            expected: 5,
            received: 5,
            ..Default::default()
        };
        let totals = Totals::of(&[p.clone(), clean.clone()]);
        assert_eq!(totals.sent, 15);
        assert_eq!(totals.lost, 1);
        assert_eq!(totals.duplicates, 1);
        assert_eq!(totals.unclean_publishers, 1);
        let line = totals.human(&[p, clean]);
        assert!(line.contains("lost 1 dup 1"), "{line}");
        assert!(line.contains("pub 0: lost 1 dup 1"), "{line}");
    }
}
