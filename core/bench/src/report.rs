//! One result per run: a human line and, on request, a JSON object.

use serde_json::{Map, Value, json};

use crate::tracker::{PublisherReport, Totals};

#[derive(Debug, Default)]
pub struct Report {
    pub scenario: String,
    pub label: String,
    /// Parameters, in the order they are shown.
    pub params: Vec<(&'static str, Value)>,
    /// Measured figures: name, value, unit.
    pub metrics: Vec<(&'static str, f64, &'static str)>,
    /// Per-publisher accounting; `None` for scenarios without messages.
    pub publishers: Option<Vec<PublisherReport>>,
    /// Extra counters (stalls, stray messages, ...), shown when non-zero.
    pub counters: Vec<(&'static str, u64)>,
    pub errors: Vec<String>,
    /// Whether loss or duplicates make the run a failure (QoS 1/2).
    pub strict_delivery: bool,
}

impl Report {
    pub fn totals(&self) -> Option<Totals> {
        self.publishers.as_deref().map(Totals::of)
    }

    /// The run is sound: no error, and for QoS 1/2 nothing lost or doubled.
    pub fn ok(&self) -> bool {
        if !self.errors.is_empty() {
            return false;
        }
        match (self.strict_delivery, self.totals()) {
            (true, Some(t)) => t.lost == 0 && t.duplicates == 0 && t.invalid == 0,
            _ => true,
        }
    }

    pub fn human(&self) -> String {
        let mut s = String::new();
        if !self.label.is_empty() {
            s.push_str(&format!("[{}] ", self.label));
        }
        s.push_str(&self.scenario);
        for (k, v) in &self.params {
            let v = match v {
                Value::String(x) => x.clone(),
                other => other.to_string(),
            };
            s.push_str(&format!(" {k}={v}"));
        }
        s.push(':');
        let figures: Vec<String> = self
            .metrics
            .iter()
            .map(|(k, v, unit)| format!("{k} {} {unit}", fmt_num(*v)))
            .collect();
        s.push_str(&format!(" {}", figures.join(", ")));
        if let (Some(t), Some(p)) = (self.totals(), &self.publishers) {
            s.push_str(&format!(" | {}", t.human(p)));
        }
        for (k, v) in &self.counters {
            if *v > 0 {
                s.push_str(&format!(" | {k} {v}"));
            }
        }
        if !self.errors.is_empty() {
            s.push_str(&format!(
                " | {} errors, first: {}",
                self.errors.len(),
                self.errors[0]
            ));
        }
        if !self.ok() {
            s.push_str(" | NOT OK");
        }
        s
    }

    pub fn json(&self) -> Value {
        let params: Map<String, Value> = self
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let metrics: Map<String, Value> = self
            .metrics
            .iter()
            .map(|(k, v, _)| (k.to_string(), json!(v)))
            .collect();
        let units: Map<String, Value> = self
            .metrics
            .iter()
            .map(|(k, _, u)| (k.to_string(), json!(u)))
            .collect();
        let counters: Map<String, Value> = self
            .counters
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "scenario": self.scenario,
            "label": self.label,
            "ok": self.ok(),
            "params": params,
            "metrics": metrics,
            "units": units,
            "delivery": self.totals().map(|t| t.to_json()),
            "publishers": self
                .publishers
                .as_ref()
                .map(|ps| ps.iter().map(PublisherReport::to_json).collect::<Vec<_>>()),
            "counters": counters,
            "errors": self.errors,
        })
    }
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Percentile (0..=100) of sorted samples, nearest rank.
pub fn percentile(sorted: &[u64], pct: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    // The small epsilon keeps 99.9% of 1000 at rank 999 despite rounding.
    let rank = ((pct / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), Some(500));
        assert_eq!(percentile(&v, 99.0), Some(990));
        assert_eq!(percentile(&v, 99.9), Some(999));
        assert_eq!(percentile(&v, 100.0), Some(1000));
        assert_eq!(percentile(&[7], 99.9), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn qos1_loss_is_not_ok_but_qos0_loss_is() {
        let lossy = vec![PublisherReport {
            id: 0,
            sent: 10,
            expected: 10,
            received: 9,
            ..Default::default()
        }];
        let mut r = Report {
            scenario: "pairs".into(),
            publishers: Some(lossy),
            strict_delivery: true,
            ..Default::default()
        };
        assert!(!r.ok());
        assert!(r.human().contains("lost 1"));
        r.strict_delivery = false;
        assert!(r.ok());
        assert_eq!(r.json()["delivery"]["lost"], 1);
    }
}
