//! Quickstart: connect to a Kafka cluster, show what the client sees, then
//! produce 100,000 keyed records and report the rate and where they went.
//!
//! ```text
//! cargo run --release --example quickstart                          # embedded 3-broker cluster
//! KAFKA_BOOTSTRAP=localhost:9092 cargo run --release --example quickstart   # your cluster
//! ```
//!
//! With `KAFKA_BOOTSTRAP` unset it starts the in-process fake cluster from
//! `protocol-tests` (3 brokers, a topic `quickstart` with 6 partitions).
//! `QUICKSTART_RECORDS` changes the number of records (default 100,000).

// The clock rule is for the library's engine; an example may time itself.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use smartkafka::compression::Compression;
use smartkafka::protocol::ApiKey;
use smartkafka::{Acks, AdminClient, ClientConfig, NewTopic, Producer, Record};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (bootstrap, _embedded) = match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(servers) if !servers.trim().is_empty() => (servers, None),
        _ => {
            let cluster = protocol_tests::FakeCluster::builder()
                .brokers(3)
                .build()
                .await;
            println!(
                "started an embedded 3-broker cluster at {}",
                cluster.bootstrap_servers()
            );
            (cluster.bootstrap_servers(), Some(cluster))
        }
    };

    let admin = AdminClient::connect(ClientConfig::new(&bootstrap).client_id("quickstart")).await?;
    match admin.create_topics(&[NewTopic::new("quickstart", 6)]).await {
        Ok(()) => println!("created topic `quickstart` with 6 partitions"),
        Err(e) if e.kafka_code() == Some(smartkafka::protocol::KafkaCode::TOPIC_ALREADY_EXISTS) => {
        }
        Err(e) => return Err(e.into()),
    }

    let metadata = admin.metadata(None).await?;
    println!(
        "\ncluster {} (controller {})",
        metadata.cluster_id.as_deref().unwrap_or("-"),
        metadata.controller_id.map_or("-".into(), |c| c.to_string())
    );
    println!("\nbrokers:");
    for broker in &metadata.brokers {
        println!("  {:>4}  {}", broker.id, broker.address());
    }
    println!("\ntopics:");
    for topic in metadata.topics.values() {
        let leaders: Vec<String> = topic
            .partitions
            .iter()
            .map(|p| {
                format!(
                    "{}→{}",
                    p.id,
                    p.leader.map_or("none".into(), |l| l.to_string())
                )
            })
            .collect();
        println!(
            "  {:<24} {} partitions  leaders [{}]",
            topic.name,
            topic.partitions.len(),
            leaders.join(" ")
        );
    }
    println!("\nnegotiated API versions:");
    let apis = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::InitProducerId,
        ApiKey::CreateTopics,
    ];
    for broker in &metadata.brokers {
        let versions = admin.api_versions(broker.id).await?;
        let line: Vec<String> = apis
            .iter()
            .map(|api| match versions.get(*api) {
                Some(v) => format!("{api:?} v{v}"),
                None => format!("{api:?} -"),
            })
            .collect();
        println!("  broker {:>4}: {}", broker.id, line.join(", "));
    }

    produce(&bootstrap).await
}

/// Produces keyed JSON-like records with a header, waits for every
/// acknowledgement, and prints the rate and the per-partition counts.
async fn produce(bootstrap: &str) -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = match std::env::var("QUICKSTART_RECORDS") {
        Ok(n) => n.parse()?,
        Err(_) => 100_000,
    };
    let producer = Producer::builder()
        .bootstrap_servers(bootstrap)
        .client_id("quickstart")
        .acks(Acks::All)
        .compression(Compression::Lz4)
        .linger(Duration::from_millis(5))
        .build()
        .await?;
    println!(
        "
producing {count} keyed records (lz4, acks=all) to `quickstart`..."
    );
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(count);
    let mut payload_bytes = 0usize;
    for i in 0..count {
        let value = format!(
            r#"{{"order":{i},"customer":"c-{:04}","amount_cents":{},"currency":"EUR"}}"#,
            i % 1000,
            (i * 37) % 100_000
        );
        payload_bytes += value.len();
        let record = Record::new("quickstart")
            .key(format!("customer-{:04}", i % 1000))
            .value(value)
            .header("source", "quickstart");
        deliveries.push(producer.send(record).await?);
    }
    let mut per_partition: BTreeMap<i32, usize> = BTreeMap::new();
    for delivery in deliveries {
        let metadata = delivery.await?;
        *per_partition.entry(metadata.partition).or_default() += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = producer.stats();
    producer.close(Duration::from_secs(10)).await?;

    println!(
        "delivered {count} records in {elapsed:.2} s: {:.0} records/s, {:.1} MB/s of values",
        count as f64 / elapsed,
        payload_bytes as f64 / elapsed / 1e6
    );
    println!(
        "{} batches in {} requests ({} records and {} bytes per batch on average), {} retries, {} errors",
        stats.batches_sent,
        stats.requests_sent,
        stats.avg_batch_records(),
        stats.avg_batch_bytes(),
        stats.retries,
        stats.errors
    );
    println!("records per partition:");
    for (partition, n) in &per_partition {
        println!("  {partition:>3}: {n}");
    }
    let delivered: usize = per_partition.values().sum();
    if delivered != count || stats.errors != 0 {
        return Err(format!("{delivered} of {count} records delivered").into());
    }
    Ok(())
}
