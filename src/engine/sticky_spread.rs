//! How keyless records spread over a topic's partitions at the rates users
//! run (KIP-794): at a moderate rate, where `linger` sends batches part
//! full, at full speed, where batches fill, and with `linger` zero, where
//! every record leaves alone. Each run is the engine on the simulated
//! cluster with a virtual clock, and the shares are read from the logs.
//! Partitioners built above the engine (the smart one) run the same check
//! through [`assert_spreads_evenly`].

use std::sync::Arc;
use std::time::Duration;

use super::partitioner::{
    ConsistentRandomPartitioner, DefaultPartitioner, Murmur2RandomPartitioner, PartitionerRecipe,
};
use super::producer::sticky_switch_due;
use super::sim::{Sim, config};

/// The topic the spread runs send to.
pub(crate) use super::sim::TOPIC;

/// Partitions of the topic the spread runs send to.
pub(crate) const PARTITIONS: usize = 6;

/// Sends `records` keyless records, `per_tick` of them every `tick`, and
/// returns how many each partition's log holds.
fn run(
    recipe: &PartitionerRecipe,
    linger: Duration,
    batch_size: usize,
    records: usize,
    per_tick: usize,
    tick: Duration,
) -> Vec<usize> {
    let mut cfg = config();
    cfg.partitioner = recipe.clone();
    cfg.linger = linger;
    cfg.batch_size = batch_size;
    cfg.buffer_memory = 64 << 20;
    let mut sim = Sim::new(cfg, 3, PARTITIONS);
    sim.settle(Duration::from_secs(1));
    assert!(sim.initialised, "the producer got its id");
    let mut sent = 0;
    while sent < records {
        let n = per_tick.min(records - sent);
        sim.send_keyless(n);
        sent += n;
        for node in sim.busy_nodes() {
            sim.answer(node, false);
        }
        sim.advance(tick);
    }
    sim.settle(Duration::from_secs(10));
    let counts: Vec<usize> = sim.cluster.logs.iter().map(Vec::len).collect();
    assert_eq!(counts.iter().sum::<usize>(), records, "{counts:?}");
    counts
}

/// Every partition's share within `tolerance` (a fraction, absolute) of
/// an even one.
fn assert_even(counts: &[usize], tolerance: f64, what: &str) {
    let total: usize = counts.iter().sum();
    let even = 1.0 / counts.len() as f64;
    for (p, &n) in counts.iter().enumerate() {
        let share = n as f64 / total as f64;
        assert!(
            (share - even).abs() <= tolerance,
            "{what}: partition {p} got {share:.3} of the records (even: {even:.3}); {counts:?}"
        );
    }
}

/// The rates users run, as (what, linger, records, records per tick,
/// tick).
const RATES: [(&str, Duration, usize, usize, Duration); 3] = [
    // 4,500 records/s of 20 bytes with the default 5 ms linger: batches of
    // about 22 records leave part full, and used to never move the sticky
    // partition (every record in one partition). 9 records every 2 ms for
    // 13 s.
    (
        "4,500 records/s, linger 5 ms",
        Duration::from_millis(5),
        60_000,
        9,
        Duration::from_millis(2),
    ),
    // Flat out: many records at once, batches fill.
    (
        "flat out",
        Duration::from_millis(5),
        60_000,
        500,
        Duration::from_millis(1),
    ),
    // Linger zero: each record leaves in a batch of its own.
    (
        "linger 0",
        Duration::ZERO,
        30_000,
        1,
        Duration::from_micros(200),
    ),
];

/// Runs `recipe` at each of the [`RATES`] over a topic of [`PARTITIONS`]
/// partitions with 1 KiB batches, and checks every partition's share is
/// within 3 points of an even one.
pub(crate) fn assert_spreads_evenly(recipe: &PartitionerRecipe) {
    for (what, linger, records, per_tick, tick) in RATES {
        let counts = run(recipe, linger, 1024, records, per_tick, tick);
        assert_even(&counts, 0.03, &format!("{} at {what}", recipe.name()));
    }
}

#[test]
fn the_default_partitioner_spreads_evenly() {
    assert_spreads_evenly(&PartitionerRecipe::new(
        "default",
        Arc::new(|seed| Box::new(DefaultPartitioner::new(seed))),
    ));
}

#[test]
fn murmur2_random_spreads_evenly() {
    assert_spreads_evenly(&PartitionerRecipe::new(
        "murmur2_random",
        Arc::new(|seed| Box::new(Murmur2RandomPartitioner::new(seed))),
    ));
}

#[test]
fn consistent_random_spreads_evenly() {
    assert_spreads_evenly(&PartitionerRecipe::new(
        "consistent_random",
        Arc::new(|seed| Box::new(ConsistentRandomPartitioner::new(seed))),
    ));
}

/// KIP-794's switching rule: bytes, not batches, at a batch boundary, and
/// at twice the batch size in any case.
#[test]
fn the_switch_follows_bytes_produced() {
    let batch = 16_384;
    assert!(
        !sticky_switch_due(batch - 1, batch, true),
        "never before batch.size bytes"
    );
    assert!(
        sticky_switch_due(batch, batch, true),
        "at batch.size, at a batch boundary"
    );
    assert!(
        !sticky_switch_due(batch, batch, false),
        "not in the middle of a batch"
    );
    assert!(!sticky_switch_due(2 * batch - 1, batch, false));
    assert!(
        sticky_switch_due(2 * batch, batch, false),
        "at twice batch.size in any case"
    );
}

/// The switch happens after batch.size bytes even when every batch left
/// part full: with 20-byte values (46 bytes estimated each) and a 1,024-byte
/// batch size, 23 records pass 1,024 bytes, and the switch waits for the
/// next batch boundary (batches of 5 here), so each partition takes at most
/// 28 records before the next one takes over.
#[test]
fn part_full_batches_still_move_the_sticky_partition() {
    let mut cfg = config();
    cfg.linger = Duration::from_millis(5);
    cfg.batch_size = 1024;
    let mut sim = Sim::new(cfg, 3, PARTITIONS);
    sim.settle(Duration::from_secs(1));
    // 5 records per 10 ms: each batch leaves at linger with 5 records.
    for _ in 0..10 {
        sim.send_keyless(5);
        sim.settle(Duration::from_millis(10));
        sim.advance(Duration::from_millis(10));
    }
    sim.settle(Duration::from_secs(1));
    let mut counts: Vec<usize> = sim.cluster.logs.iter().map(Vec::len).collect();
    counts.sort_unstable();
    counts.retain(|&n| n > 0);
    assert!(
        counts.len() >= 2,
        "the sticky partition moved on: {counts:?}"
    );
    assert!(counts.iter().all(|&n| n <= 23 + 5), "{counts:?}");
}
