//! Hard eviction thresholds in kubelet's `--eviction-hard` syntax: `memory.available<100Mi`
//! or a share of the node's memory, `memory.available<5%`; several separated by commas.

use skiff_api::validation::quantity::{Quantity, QuantityFormat};

/// What a threshold watches (kubelet's eviction signals; this agent observes memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The node's memory capacity minus the working set of its pods' cgroup subtree.
    MemoryAvailable,
}

impl Signal {
    /// The name in `--eviction-hard`.
    pub fn name(self) -> &'static str {
        match self {
            Self::MemoryAvailable => "memory.available",
        }
    }
}

/// A threshold's value: an amount, or a share of the node's capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ThresholdValue {
    Quantity(Quantity),
    /// 0.0..=1.0 of the capacity.
    Percentage(f64),
}

/// One hard threshold: the signal is met when it falls below the value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: ThresholdValue,
}

impl Threshold {
    /// The threshold as an amount, for a node with `capacity` bytes (a percentage is taken
    /// of it, as kubelet does); printed in eviction messages.
    pub fn quantity(&self, capacity: u64) -> Quantity {
        match self.value {
            ThresholdValue::Quantity(q) => q,
            ThresholdValue::Percentage(share) => {
                Quantity::from_value((capacity as f64 * share) as i64, QuantityFormat::BinarySi)
            }
        }
    }

    /// Whether `available` bytes meet (fall below) the threshold on a node of `capacity`.
    pub fn is_met(&self, available: i64, capacity: u64) -> bool {
        available < self.quantity(capacity).value()
    }
}

/// The thresholds of `--eviction-hard` (empty: no eviction).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Thresholds(pub Vec<Threshold>);

/// Why `--eviction-hard` does not parse; each names the part that is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    #[error(
        "{part:?}: expected SIGNAL<VALUE such as memory.available<100Mi or memory.available<5%"
    )]
    Syntax { part: String },
    #[error("{part:?}: unknown eviction signal {signal:?} (supported: memory.available)")]
    Signal { part: String, signal: String },
    #[error("{part:?}: {value:?} is not a quantity: {reason}")]
    Quantity {
        part: String,
        value: String,
        reason: String,
    },
    #[error("{part:?}: eviction threshold must be positive")]
    Negative { part: String },
    #[error("{part:?}: eviction percentage threshold must be >= 0% and <= 100%")]
    Percentage { part: String },
    #[error("{part:?}: duplicate eviction threshold for signal {signal}")]
    Duplicate { part: String, signal: &'static str },
}

/// Parses `--eviction-hard`: comma-separated `SIGNAL<VALUE`, VALUE a quantity or `N%`.
///
/// # Errors
/// The first part that is not a valid threshold, and why.
pub fn parse_thresholds(text: &str) -> Result<Thresholds, ThresholdError> {
    let mut thresholds: Vec<Threshold> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let syntax = || ThresholdError::Syntax { part: part.into() };
        let (signal, value) = part.split_once('<').ok_or_else(syntax)?;
        let (signal, value) = (signal.trim(), value.trim());
        if value.is_empty() || value.contains(['<', '>', '=']) {
            return Err(syntax());
        }
        let signal = match signal {
            "memory.available" => Signal::MemoryAvailable,
            other => {
                return Err(ThresholdError::Signal {
                    part: part.into(),
                    signal: other.into(),
                });
            }
        };
        let value = match value.strip_suffix('%') {
            Some(number) => {
                let percent: f64 = number.trim().parse().map_err(|_| syntax())?;
                if !(0.0..=100.0).contains(&percent) {
                    return Err(ThresholdError::Percentage { part: part.into() });
                }
                ThresholdValue::Percentage(percent / 100.0)
            }
            None => {
                let quantity =
                    Quantity::parse(value).map_err(|error| ThresholdError::Quantity {
                        part: part.into(),
                        value: value.into(),
                        reason: error.to_string(),
                    })?;
                if quantity.is_negative() {
                    return Err(ThresholdError::Negative { part: part.into() });
                }
                ThresholdValue::Quantity(quantity)
            }
        };
        if thresholds.iter().any(|t| t.signal == signal) {
            return Err(ThresholdError::Duplicate {
                part: part.into(),
                signal: signal.name(),
            });
        }
        thresholds.push(Threshold { signal, value });
    }
    Ok(Thresholds(thresholds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Threshold {
        let parsed = parse_thresholds(text).unwrap();
        assert_eq!(parsed.0.len(), 1, "{text}");
        parsed.0[0]
    }

    #[test]
    fn a_quantity_threshold_is_met_below_its_amount() {
        let t = one("memory.available<100Mi");
        assert_eq!(t.signal, Signal::MemoryAvailable);
        assert_eq!(t.quantity(8 << 30).to_string(), "100Mi");
        assert!(t.is_met((100 << 20) - 1, 8 << 30));
        assert!(!t.is_met(100 << 20, 8 << 30));
        assert!(t.is_met(-5, 8 << 30));
    }

    #[test]
    fn a_percentage_threshold_is_a_share_of_the_capacity() {
        let t = one(" memory.available < 5% ");
        assert_eq!(t.value, ThresholdValue::Percentage(0.05));
        // 5% of 1000Mi = 50Mi.
        assert_eq!(t.quantity(1000 << 20).to_string(), "50Mi");
        assert!(t.is_met(49 << 20, 1000 << 20));
        assert!(!t.is_met(51 << 20, 1000 << 20));
        assert_eq!(
            one("memory.available<0%").quantity(1 << 30).to_string(),
            "0"
        );
    }

    #[test]
    fn an_empty_flag_means_no_eviction() {
        assert_eq!(parse_thresholds("").unwrap(), Thresholds::default());
        assert_eq!(parse_thresholds(" , ").unwrap(), Thresholds::default());
    }

    #[test]
    fn bad_thresholds_name_the_part_and_what_is_wrong() {
        let cases = [
            ("memory.available>100Mi", "expected SIGNAL<VALUE"),
            ("memory.available100Mi", "expected SIGNAL<VALUE"),
            ("memory.available<", "expected SIGNAL<VALUE"),
            ("memory.available<=1Gi", "expected SIGNAL<VALUE"),
            ("memory.available<abc%", "expected SIGNAL<VALUE"),
            (
                "nodefs.available<10%",
                "unknown eviction signal \"nodefs.available\"",
            ),
            ("memory.available<100MB", "\"100MB\" is not a quantity"),
            ("memory.available<-1Mi", "must be positive"),
            ("memory.available<150%", ">= 0% and <= 100%"),
            (
                "memory.available<1Gi,memory.available<5%",
                "duplicate eviction threshold for signal memory.available",
            ),
        ];
        for (text, expected) in cases {
            let message = parse_thresholds(text).unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message}");
            let part = text.rsplit(',').next().unwrap();
            assert!(message.contains(&format!("{part:?}")), "{text}: {message}");
        }
    }
}
