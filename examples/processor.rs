//! A record processor with retries and a dead-letter topic: writes 1,000
//! payments, processes them with a [`Processor`] that hears about its
//! partitions and its shutdown, and stops on ctrl-c or once every payment
//! is either processed or dead-lettered. Payments with a negative amount
//! are refused for good (straight to the dead-letter topic); every 100th
//! payment fails twice before it goes through (tried again in place).
//! The dead-letter topic is then read back with its failure headers.
//!
//! ```text
//! cargo run --example processor                                  # embedded cluster
//! KAFKA_BOOTSTRAP=localhost:9092 cargo run --example processor   # your cluster
//! ```
//!
//! Against your own cluster the topics `payments` (3 partitions) and
//! `payments.dlt` must exist (or be created automatically).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use smartkafka::consumer::{AutoOffsetReset, ConsumedRecord, Consumer};
use smartkafka::failure_headers::FailureInfo;
use smartkafka::processor::{ProcessError, Processor, ProcessorRunner};
use smartkafka::{Producer, Record};

const TOPIC: &str = "payments";
const DEAD_LETTERS: &str = "payments.dlt";
const PAYMENTS: u64 = 1_000;

/// Books payments; counts attempts per payment to fail some transiently.
#[derive(Default)]
struct Payments {
    attempts: Mutex<HashMap<(i32, i64), u32>>,
}

impl Processor for Payments {
    async fn process(&self, record: &ConsumedRecord) -> Result<(), ProcessError> {
        let text = std::str::from_utf8(record.value.as_deref().unwrap_or_default())?;
        let amount: i64 = text.parse()?;
        if amount < 0 {
            return Err(ProcessError::permanent(format!("negative amount {amount}")));
        }
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts
                .entry((record.partition, record.offset))
                .or_default();
            *n += 1;
            *n
        };
        if amount % 100 == 0 && attempt < 3 {
            return Err(ProcessError::new("the ledger is busy"));
        }
        Ok(())
    }

    fn on_started(&self, topics: &[String]) {
        println!("subscribed to {topics:?}");
    }

    fn on_assigned(&self, partitions: &[(String, i32)]) {
        println!("assigned {partitions:?}");
    }

    fn on_revoked(&self, partitions: &[(String, i32)]) {
        println!("revoked {partitions:?}");
    }

    fn on_stopping(&self) {
        println!("stopping: finishing the payments in progress");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (bootstrap, _embedded) = match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(servers) if !servers.trim().is_empty() => (servers, None),
        _ => {
            let cluster = protocol_tests::FakeCluster::builder()
                .topic(TOPIC, 3)
                .topic(DEAD_LETTERS, 1)
                .build()
                .await;
            println!(
                "started an embedded cluster at {}",
                cluster.bootstrap_servers()
            );
            (cluster.bootstrap_servers(), Some(cluster))
        }
    };

    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .build()
        .await?;
    let mut deliveries = Vec::new();
    for i in 0..PAYMENTS {
        // Every 97th payment is negative.
        let amount = if i % 97 == 5 { -(i as i64) } else { i as i64 };
        let record = Record::new(TOPIC)
            .key(format!("account-{}", i % 50))
            .value(amount.to_string());
        deliveries.push(producer.send(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    println!("wrote {PAYMENTS} payments to `{TOPIC}`");

    let consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id("payments-example")
        .enable_auto_commit(false)
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .build()
        .await?;
    let runner = ProcessorRunner::builder(consumer, producer.clone(), Payments::default())
        .topics(&[TOPIC])
        .dead_letter_topic(DEAD_LETTERS)
        .max_attempts(3)
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .max_concurrency(8)
        .build()?;
    let stats = runner.stats();
    let stop = async move {
        let all_done = async {
            loop {
                let s = stats.snapshot();
                if s.processed + s.dead_lettered >= PAYMENTS {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => println!("ctrl-c"),
            () = all_done => println!("every payment handled"),
        }
    };
    let summary = runner.run_until(stop).await?;
    println!(
        "consumed {}, processed {}, failed attempts {}, dead-lettered {}",
        summary.consumed, summary.processed, summary.failed, summary.dead_lettered
    );

    // What the dead-letter topic holds, and why.
    let mut inspector = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id("payments-example-inspector")
        .enable_auto_commit(false)
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .build()
        .await?;
    inspector.subscribe(&[DEAD_LETTERS])?;
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen < summary.dead_lettered && tokio::time::Instant::now() < deadline {
        for record in inspector.poll(Duration::from_millis(200)).await? {
            seen += 1;
            if let Some(info) = FailureInfo::from_headers(&record.headers) {
                let at = |n: Option<i64>| n.map_or("?".to_string(), |n| n.to_string());
                println!(
                    "  dead letter from {}-{}@{} after {} attempt(s): {} ({})",
                    info.original_topic,
                    at(info.original_partition.map(i64::from)),
                    at(info.original_offset),
                    info.attempts,
                    info.error,
                    info.error_kind
                );
            }
        }
    }
    inspector.close().await?;
    producer.close(Duration::from_secs(5)).await?;
    Ok(())
}
