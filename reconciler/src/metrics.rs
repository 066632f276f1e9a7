//! The reconciler's metrics, kept in a `prometheus-client` registry and rendered in the
//! OpenMetrics text format that Prometheus scrapes.
//!
//! Counters are registered without their `_total` suffix, which the encoder adds to the sample:
//! `hakiri_ticks_total` is the family `hakiri_ticks`. Tick durations are a histogram, so
//! `hakiri_tick_seconds_sum` and `_count` come with buckets.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`]'s document.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Counters of what the reconciler did, for the metrics endpoint and progress output.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Ticks done.
    pub ticks: Counter,
    /// How long ticks took, in seconds.
    pub tick_seconds: Histogram,
    /// How long the last tick took, in seconds.
    pub last_tick_seconds: Gauge<f64, AtomicU64>,
    /// Runs begun.
    pub dispatched: Counter,
    /// Runs that succeeded.
    pub succeeded: Counter,
    /// Runs that failed.
    pub failed: Counter,
    /// Runs cancelled (shutdown, schema held).
    pub cancelled: Counter,
    /// Leases lost to fencing while running, or races lost to other reconcilers.
    pub lease_losses: Counter,
    /// Abandoned runs reaped.
    pub reaped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let mut counter = |name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let ticks = counter("hakiri_ticks", "Reconcile ticks done");
        let dispatched = counter("hakiri_runs_dispatched", "Runs begun");
        let succeeded = counter("hakiri_runs_succeeded", "Runs that succeeded");
        let failed = counter("hakiri_runs_failed", "Runs that failed");
        let cancelled = counter("hakiri_runs_cancelled", "Runs cancelled");
        let lease_losses = counter("hakiri_lease_losses", "Leases lost (fenced or raced)");
        let reaped = counter("hakiri_runs_reaped", "Abandoned runs reaped");
        // 1 ms to about 16 s.
        let tick_seconds = Histogram::new(exponential_buckets(0.001, 4.0, 8));
        registry.register(
            "hakiri_tick_seconds",
            "How long reconcile ticks took",
            tick_seconds.clone(),
        );
        let last_tick_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "hakiri_last_tick_seconds",
            "How long the last tick took",
            last_tick_seconds.clone(),
        );
        Self {
            registry,
            ticks,
            tick_seconds,
            last_tick_seconds,
            dispatched,
            succeeded,
            failed,
            cancelled,
            lease_losses,
            reaped,
        }
    }
}

impl Metrics {
    /// Records a tick that took `seconds`.
    pub fn tick_took(&self, seconds: f64) {
        self.ticks.inc();
        self.tick_seconds.observe(seconds);
        self.last_tick_seconds.set(seconds);
    }

    /// The metrics in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a `String` cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_its_current_value() {
        let metrics = Metrics::default();
        metrics.tick_took(0.25);
        metrics.tick_took(0.5);
        metrics.dispatched.inc_by(3);
        metrics.succeeded.inc();
        metrics.lease_losses.inc();
        let text = metrics.render();
        for line in [
            "# TYPE hakiri_ticks counter",
            "hakiri_ticks_total 2",
            "hakiri_runs_dispatched_total 3",
            "hakiri_runs_succeeded_total 1",
            "hakiri_runs_failed_total 0",
            "hakiri_runs_cancelled_total 0",
            "hakiri_lease_losses_total 1",
            "hakiri_runs_reaped_total 0",
            "# TYPE hakiri_tick_seconds histogram",
            "hakiri_tick_seconds_sum 0.75",
            "hakiri_tick_seconds_count 2",
            "hakiri_last_tick_seconds 0.5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
