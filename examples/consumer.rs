//! A consumer group at work: writes 30,000 records to a 6-partition topic,
//! then reads them back with two group members that split the partitions,
//! commit after processing, and commit again when a partition is revoked.
//! Half way through, one member closes and the other takes its partitions
//! over from the committed offsets.
//!
//! ```text
//! cargo run --release --example consumer                            # embedded 3-broker cluster
//! KAFKA_BOOTSTRAP=localhost:9092 cargo run --release --example consumer     # your cluster
//! ```
//!
//! Against your own cluster the topic `consumer-example` must exist (or be
//! created automatically) with 6 partitions.

use std::collections::BTreeSet;
use std::time::Duration;

use smartkafka::consumer::{
    AutoOffsetReset, Consumer, ConsumerConfig, RebalanceContext, RebalanceListener,
};
use smartkafka::protocol::KafkaCode;
use smartkafka::{Producer, Record};

const TOPIC: &str = "consumer-example";
const RECORDS: usize = 30_000;

/// Prints rebalances and commits what was processed before partitions
/// leave this member.
struct CommitOnRevoke(&'static str);

impl RebalanceListener for CommitOnRevoke {
    fn on_assigned(&mut self, partitions: &[(String, i32)], _: &mut RebalanceContext) {
        println!("{}: assigned {:?}", self.0, partition_numbers(partitions));
    }
    fn on_revoked(&mut self, partitions: &[(String, i32)], ctx: &mut RebalanceContext) {
        ctx.commit_positions();
        println!(
            "{}: revoked {:?} (positions committed)",
            self.0,
            partition_numbers(partitions)
        );
    }
}

/// Commits what `poll` returned. A commit that races a rebalance fails
/// (the group moved to a new generation); the partitions still owned are
/// committed by the next call, and those that moved were committed on
/// revoke, so the error is only reported.
async fn commit(consumer: &mut Consumer) -> Result<(), smartkafka::Error> {
    match consumer.commit().await {
        Err(e)
            if matches!(
                e.kafka_code(),
                Some(KafkaCode::REBALANCE_IN_PROGRESS | KafkaCode::ILLEGAL_GENERATION)
            ) =>
        {
            println!("commit skipped during a rebalance: {e}");
            Ok(())
        }
        other => other,
    }
}

fn partition_numbers(partitions: &[(String, i32)]) -> Vec<i32> {
    partitions.iter().map(|(_, p)| *p).collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (bootstrap, _embedded) = match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(servers) if !servers.trim().is_empty() => (servers, None),
        _ => {
            let cluster = protocol_tests::FakeCluster::builder()
                .brokers(3)
                .topic(TOPIC, 6)
                .build()
                .await;
            println!(
                "started an embedded 3-broker cluster at {}",
                cluster.bootstrap_servers()
            );
            (cluster.bootstrap_servers(), Some(cluster))
        }
    };

    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .build()
        .await?;
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let record = Record::new(TOPIC)
            .key(format!("key-{}", i % 600))
            .value(i.to_string());
        deliveries.push(producer.send(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close(Duration::from_secs(10)).await?;
    println!("wrote {RECORDS} records to `{TOPIC}`");

    // Commit by hand after processing; the listener commits on revoke.
    let config = |name: &'static str| {
        ConsumerConfig::new(&bootstrap, "consumer-example")
            .auto_offset_reset(AutoOffsetReset::Earliest)
            .enable_auto_commit(false)
            .heartbeat_interval(Duration::from_millis(500))
            .session_timeout(Duration::from_secs(10))
            .max_poll_records(1_000)
            .assignors(vec![smartkafka::consumer::Assignor::CooperativeSticky])
            .client_id(name)
    };
    let mut first = Some(
        Consumer::builder()
            .config(config("first"))
            .rebalance_listener(CommitOnRevoke("first"))
            .build()
            .await?,
    );
    let mut second = Consumer::builder()
        .config(config("second"))
        .rebalance_listener(CommitOnRevoke("second"))
        .build()
        .await?;
    if let Some(first) = first.as_mut() {
        first.subscribe(&[TOPIC])?;
    }
    second.subscribe(&[TOPIC])?;

    // (partition, offset) of every record processed.
    let mut seen = BTreeSet::new();
    let mut read = [0usize; 2];
    while seen.len() < RECORDS {
        if let Some(consumer) = first.as_mut() {
            let records = consumer.poll(Duration::from_millis(100)).await?;
            read[0] += records.len();
            seen.extend(records.iter().map(|r| (r.partition, r.offset)));
            commit(consumer).await?;
        }
        let records = second.poll(Duration::from_millis(100)).await?;
        read[1] += records.len();
        seen.extend(records.iter().map(|r| (r.partition, r.offset)));
        commit(&mut second).await?;
        if seen.len() >= RECORDS / 2
            && let Some(closing) = first.take()
        {
            println!("first: closing after {} records", read[0]);
            closing.close().await?;
        }
    }
    println!(
        "read all {RECORDS} records: {} by the first member, {} by the second; second owns {:?} now",
        read[0],
        read[1],
        partition_numbers(&second.assignment())
    );
    for (topic, partition) in second.assignment() {
        println!(
            "  {topic}-{partition}: committed {:?}, lag {:?}",
            second.committed(&topic, partition).await?,
            second.lag(&topic, partition)
        );
    }
    second.close().await?;
    Ok(())
}
