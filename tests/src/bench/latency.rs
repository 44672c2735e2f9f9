//! Latency samples and their percentiles.
//!
//! Why percentiles and not a mean: the targets are about what a caller
//! experiences most of the time (p50) and at its worst ordinary moments (p99,
//! p99.9); a mean hides both.

use std::fmt;
use std::time::{Duration, Instant};

/// The summary of a set of latency samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

impl Latency {
    /// Summarises `samples` (which it sorts). Empty input gives zeros.
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        Latency {
            samples: samples.len(),
            p50: percentile(&samples, 0.50),
            p99: percentile(&samples, 0.99),
            p999: percentile(&samples, 0.999),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

/// Wall time of `iterations` calls of `f` after `warmup` unmeasured ones, one
/// sample per call.
pub fn sample<E>(
    warmup: usize,
    iterations: usize,
    f: impl FnMut() -> Result<(), E>,
) -> Result<Latency, E> {
    samples(warmup, iterations, f).map(Latency::of)
}

/// The raw samples behind [`sample`].
pub fn samples<E>(
    warmup: usize,
    iterations: usize,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<Vec<Duration>, E> {
    for _ in 0..warmup {
        f()?;
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        f()?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A duration in the unit that suits it: `850 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`.
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos() as f64;
        if ns < 1_000.0 {
            write!(f, "{ns:.0} ns")
        } else if ns < 1_000_000.0 {
            write!(f, "{:.1} µs", ns / 1e3)
        } else if ns < 1_000_000_000.0 {
            write!(f, "{:.2} ms", ns / 1e6)
        } else {
            write!(f, "{:.2} s", ns / 1e9)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<_> = (1..=1000).map(Duration::from_micros).collect();
        let l = Latency::of(samples);
        assert_eq!(l.samples, 1000);
        assert_eq!(l.p50, Duration::from_micros(500));
        assert_eq!(l.p99, Duration::from_micros(990));
        assert_eq!(l.p999, Duration::from_micros(999));
        assert_eq!(l.max, Duration::from_micros(1000));
        assert_eq!(Latency::of(Vec::new()).p50, Duration::ZERO);
        assert_eq!(
            Latency::of(vec![Duration::from_micros(7)]).p999,
            Duration::from_micros(7)
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(Human(Duration::from_nanos(850)).to_string(), "850 ns");
        assert_eq!(Human(Duration::from_nanos(12_345)).to_string(), "12.3 µs");
        assert_eq!(Human(Duration::from_micros(4_560)).to_string(), "4.56 ms");
        assert_eq!(Human(Duration::from_millis(1_230)).to_string(), "1.23 s");
    }
}
