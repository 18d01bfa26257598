//! The hot-partition demo: a consumer group keeps up on four partitions of
//! a six-partition topic and has stalled on two. The standard partitioner
//! keeps feeding the stalled partitions their share, so their lag keeps
//! growing; the smart partitioner, once its first health refresh is in,
//! routes new keyless records around them.
//!
//! ```text
//! cargo run --example smart_partitioner
//! ```
//!
//! It runs against the in-process fake cluster from `protocol-tests`, where
//! the group's consumers are simulated by committing offsets directly:
//! partitions 0-3 are committed up to their end every few milliseconds,
//! partitions 4 and 5 stay where they were.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use protocol_tests::FakeCluster;
use smartkafka::health::{Scoring, SmartConfig};
use smartkafka::{Producer, Record};

const TOPIC: &str = "hot";
const GROUP: &str = "readers";
const PARTITIONS: i32 = 6;
const STALLED: [i32; 2] = [4, 5];
const ROUNDS: usize = 5;
const PER_ROUND: usize = 1_000;

fn ends(cluster: &FakeCluster) -> Vec<i64> {
    (0..PARTITIONS)
        .map(|p| cluster.high_watermark(TOPIC, p))
        .collect()
}

fn lags(cluster: &FakeCluster) -> Vec<i64> {
    (0..PARTITIONS)
        .map(|p| {
            let end = cluster.high_watermark(TOPIC, p);
            end - cluster.committed_offset(GROUP, TOPIC, p).unwrap_or(0)
        })
        .collect()
}

fn row(values: &[i64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:>6}"))
        .collect::<Vec<_>>()
        .join("")
}

/// Sends `ROUNDS` rounds of keyless records, printing where each round went
/// and the group's lag after it; returns the records per partition.
async fn run(name: &str, cluster: &FakeCluster, producer: &Producer) -> Vec<i64> {
    println!("\n{name} partitioner");
    println!(
        "  {:<22}{}",
        "partition",
        row(&(0..i64::from(PARTITIONS)).collect::<Vec<_>>())
    );
    let start = ends(cluster);
    for round in 1..=ROUNDS {
        let before = ends(cluster);
        let mut deliveries = Vec::with_capacity(PER_ROUND);
        for i in 0..PER_ROUND {
            let record = Record::new(TOPIC).value(format!("{name} {round} {i} {}", "x".repeat(80)));
            deliveries.push(producer.send(record).await.expect("send"));
        }
        producer.flush().await.expect("flush");
        for delivery in deliveries {
            delivery.await.expect("delivered");
        }
        // Give the simulated consumers a moment to commit.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let sent: Vec<i64> = ends(cluster)
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect();
        println!("  round {round} records sent to{}", row(&sent));
        println!("          group lag now  {}", row(&lags(cluster)));
    }
    ends(cluster)
        .iter()
        .zip(&start)
        .map(|(a, b)| a - b)
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = Arc::new(
        FakeCluster::builder()
            .brokers(3)
            .topic(TOPIC, PARTITIONS)
            .build()
            .await,
    );
    let bootstrap = cluster.bootstrap_servers();
    println!(
        "embedded 3-broker cluster at {bootstrap}, topic `{TOPIC}` with {PARTITIONS} partitions"
    );
    println!("consumer group `{GROUP}` keeps up on partitions 0-3 and has stalled on 4 and 5");

    // The simulated consumers.
    let stop = Arc::new(AtomicBool::new(false));
    let consumers = {
        let cluster = Arc::clone(&cluster);
        let stop = Arc::clone(&stop);
        for p in STALLED {
            cluster.commit_offset(GROUP, TOPIC, p, 0);
        }
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for p in (0..PARTITIONS).filter(|p| !STALLED.contains(p)) {
                    cluster.commit_offset(GROUP, TOPIC, p, cluster.high_watermark(TOPIC, p));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let standard = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .batch_size(1024)
        .build()
        .await?;
    let by_standard = run("standard", &cluster, &standard).await;
    standard.close(Duration::from_secs(5)).await?;

    let smart = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .batch_size(1024)
        .smart_partitioner(
            SmartConfig::new(GROUP)
                .topics([TOPIC])
                .scoring(Scoring::Trend)
                .max_lag_for_health(200)
                .refresh_interval(Duration::from_millis(200)),
        )
        .build()
        .await?;
    let mut updates = smart
        .health_stream()
        .expect("smart partitioning is on")
        .topic(TOPIC);
    let first = updates.next().await.expect("a first health refresh");
    let scores: Vec<String> = first
        .partitions()
        .iter()
        .map(|p| {
            let status = p.status().map_or("-", |s| s.name());
            format!("{}:{:.2} ({status})", p.partition(), p.score)
        })
        .collect();
    println!(
        "\nfirst health refresh: scores {}, healthy {:?}",
        scores.join(" "),
        first.healthy_partitions()
    );
    let by_smart = run("smart", &cluster, &smart).await;
    let routing = smart.routing_stats().expect("smart partitioning is on");
    // Why each partition gets what it gets, as the producer sees it now.
    let summary = smart.health_summary().expect("smart partitioning is on");
    if let Some(snapshot) = summary.topic(TOPIC).and_then(|t| t.snapshot.clone()) {
        println!(
            "
health after the run (status, consumer rate, lag slope, score, why excluded):"
        );
        for p in snapshot.partitions() {
            let trend = p.trend;
            println!(
                "  partition {}: {:<12} {:>8} rec/s  {:>+9.0} rec/s  score {:.2}  {}",
                p.partition(),
                p.status().map_or("-", |s| s.name()),
                trend
                    .and_then(|t| t.processing_rate)
                    .map_or("-".to_string(), |r| format!("{r:.0}")),
                trend.map_or(0.0, |t| t.slope),
                p.score,
                p.exclusion().map_or("", |e| e.name()),
            );
        }
    }
    smart.close(Duration::from_secs(5)).await?;
    stop.store(true, Ordering::Relaxed);
    consumers.await?;

    let stalled = |counts: &[i64]| STALLED.iter().map(|p| counts[*p as usize]).sum::<i64>();
    let total = (ROUNDS * PER_ROUND) as f64;
    let (a, b) = (stalled(&by_standard), stalled(&by_smart));
    println!("\nrecords sent to the stalled partitions 4 and 5:");
    println!(
        "  standard  {a:>6}  ({:.1} % of {total})",
        100.0 * a as f64 / total
    );
    println!(
        "  smart     {b:>6}  ({:.1} % of {total})",
        100.0 * b as f64 / total
    );
    if a > 0 {
        println!(
            "  the smart partitioner sent them {:.1} % of what the standard one did",
            100.0 * b as f64 / a as f64
        );
    }
    println!(
        "smart routing: {} by health, {} by relative health, {} by fallback",
        routing.routed_by_health,
        routing.routed_by_relative_health,
        routing.fallback()
    );
    Ok(())
}
