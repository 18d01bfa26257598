//! Periodic statistics, as librdkafka's `statistics.interval.ms`: a task
//! that hands the producer's [`ProducerStats`] snapshot to a callback every
//! interval, until the producer is closed or its last handle dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Producer, Shared};
use crate::engine::ProducerStats;

type Report = dyn Fn(&ProducerStats) + Send + Sync;

/// The function that receives a [`ProducerStats`] snapshot every
/// statistics interval (see
/// [`ProducerBuilder::on_statistics`](crate::ProducerBuilder::on_statistics)).
/// It runs on the producer's runtime: keep it short, or hand the snapshot
/// to a thread of your own.
#[derive(Clone)]
pub struct StatisticsCallback(Arc<Report>);

impl StatisticsCallback {
    /// Wraps `report`, called with each snapshot.
    pub fn new(report: impl Fn(&ProducerStats) + Send + Sync + 'static) -> StatisticsCallback {
        StatisticsCallback(Arc::new(report))
    }

    /// Calls the callback; a panic is logged, not propagated.
    fn report(&self, stats: &ProducerStats) {
        let call = std::panic::AssertUnwindSafe(|| (self.0)(stats));
        if std::panic::catch_unwind(call).is_err() {
            tracing::error!("the statistics callback panicked");
        }
    }
}

impl std::fmt::Debug for StatisticsCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatisticsCallback")
    }
}

/// Starts the reporting task. It holds the producer weakly, so it never
/// keeps a dropped producer alive.
pub(super) fn spawn(shared: Weak<Shared>, interval: Duration, callback: StatisticsCallback) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate: skip it
        loop {
            ticks.tick().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let producer = Producer { shared };
            if producer.check_open().is_err() {
                return;
            }
            let stats = producer.stats();
            drop(producer);
            callback.report(&stats);
        }
    });
}
