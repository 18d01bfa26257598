//! The smart partitioner's keyless spread when every partition is healthy:
//! it sticks to a partition per batch by KIP-794's rule like the built-in
//! partitioners, so it must spread as evenly as they do at the rates users
//! run. The runs are the engine's simulated cluster with a virtual clock.

use std::sync::Arc;

use super::{HealthSnapshot, HealthTable, LinearScorer, PartitionLag, SmartPartitioner};
use crate::engine::partitioner::PartitionerRecipe;
use crate::engine::sticky_spread::{PARTITIONS, TOPIC, assert_spreads_evenly};

#[test]
fn smart_with_every_partition_healthy_spreads_evenly() {
    let table = HealthTable::new();
    // Some instant to stamp the health with: the partitioner judges
    // staleness against the table's own time, never the clock.
    #[allow(clippy::disallowed_methods)]
    let at = std::time::Instant::now();
    let lags = (0..PARTITIONS as i32).map(|p| PartitionLag::from_lag(p, 0));
    table.publish(
        HealthSnapshot::new(TOPIC, lags, &LinearScorer::new(1000), 0.5, at),
        at,
    );
    assert_spreads_evenly(&PartitionerRecipe::new(
        "smart",
        Arc::new(move |seed| Box::new(SmartPartitioner::new(table.clone(), seed))),
    ));
}
