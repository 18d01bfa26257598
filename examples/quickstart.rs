//! Quickstart: connect to a Kafka cluster and show what the client sees.
//!
//! ```text
//! cargo run --release --example quickstart                          # embedded 3-broker cluster
//! KAFKA_BOOTSTRAP=localhost:9092 cargo run --release --example quickstart   # your cluster
//! ```
//!
//! With `KAFKA_BOOTSTRAP` unset it starts the in-process fake cluster from
//! `protocol-tests` (3 brokers, a topic `quickstart` with 6 partitions).

use kafka_protocol::messages::ApiKey;
use smartkafka::{AdminClient, ClientConfig, NewTopic};

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
    Ok(())
}
