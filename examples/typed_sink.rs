//! A typed sink: metric results as JSON values keyed by service name, with
//! headers, message ids, delivery hooks, a circuit breaker and a dead-letter
//! topic; then the sink's metrics.
//!
//! ```text
//! cargo run --example typed_sink --features json                            # embedded cluster
//! KAFKA_BOOTSTRAP=localhost:9092 cargo run --example typed_sink --features json   # your cluster
//! ```
//!
//! With `KAFKA_BOOTSTRAP` unset it starts the in-process fake cluster from
//! `protocol-tests`. The topics `metrics-results` (3 partitions) and
//! `metrics-results.dlt` are created if they do not exist.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use smartkafka::protocol::KafkaCode;
use smartkafka::serialization::{Json, Utf8};
use smartkafka::sink::{BreakerConfig, DeliveryStatus, RetryPolicy, Sink, SinkRecord};
use smartkafka::{AdminClient, ClientConfig, NewTopic, Producer};

const TOPIC: &str = "metrics-results";
const DEAD_LETTERS: &str = "metrics-results.dlt";
const SERVICES: [&str; 4] = ["api-gateway", "billing", "search", "checkout"];

#[derive(Serialize)]
struct MetricResult {
    service: String,
    avg_latency: f64,
    count: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (bootstrap, _embedded) = match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(servers) if !servers.trim().is_empty() => (servers, None),
        _ => {
            let cluster = protocol_tests::FakeCluster::builder().build().await;
            println!(
                "started an embedded cluster at {}",
                cluster.bootstrap_servers()
            );
            (cluster.bootstrap_servers(), Some(cluster))
        }
    };
    let admin = AdminClient::connect(ClientConfig::new(&bootstrap).client_id("typed-sink")).await?;
    match admin
        .create_topics(&[NewTopic::new(TOPIC, 3), NewTopic::new(DEAD_LETTERS, 1)])
        .await
    {
        Err(e) if e.kafka_code() != Some(KafkaCode::TOPIC_ALREADY_EXISTS) => return Err(e.into()),
        _ => {}
    }

    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .client_id("typed-sink")
        .build()
        .await?;
    let failures = Arc::new(AtomicU64::new(0));
    let on_failure = Arc::clone(&failures);
    let sink: Sink<str, MetricResult> = Sink::builder(producer.clone(), TOPIC)
        .key_serializer(Utf8)
        .value_serializer(Json)
        .content_type_header(true)
        .message_id_header("message-id")
        .circuit_breaker(
            BreakerConfig::new()
                .failure_threshold(5)
                .window(Duration::from_secs(10))
                .open_timeout(Duration::from_secs(30)),
        )
        .retry(RetryPolicy::new(3))
        .dead_letter_topic(DEAD_LETTERS)
        .on_failure(move |id, error| {
            on_failure.fetch_add(1, Ordering::Relaxed);
            eprintln!("record {id} failed: {error}");
        })
        .build()?;

    // One record, waited for, and its tracked status.
    let result = MetricResult {
        service: "api-gateway".into(),
        avg_latency: 123.45,
        count: 1000,
    };
    let delivery = sink
        .send(
            SinkRecord::new(&result)
                .key("api-gateway")
                .header("region", "us-east-1"),
        )
        .await?;
    let id = delivery.id().clone();
    let metadata = delivery.await?;
    println!(
        "record {id} written at {}-{}@{}",
        metadata.topic, metadata.partition, metadata.offset
    );
    if let Some(DeliveryStatus::Delivered { partition, offset }) = sink.status(&id) {
        println!("tracked status: delivered to partition {partition} at offset {offset}");
    }

    // A batch: one result per record, in order.
    let results: Vec<MetricResult> = (0..2_000u64)
        .map(|i| MetricResult {
            service: SERVICES[(i % 4) as usize].into(),
            avg_latency: 10.0 + (i % 97) as f64,
            count: i,
        })
        .collect();
    let records = results.iter().map(|r| {
        SinkRecord::new(r)
            .key(r.service.as_str())
            .header("region", "eu-west-1")
    });
    let outcomes = sink.send_batch(records).await;
    let ok = outcomes.iter().filter(|r| r.is_ok()).count();
    println!("batch: {ok} of {} records delivered", outcomes.len());

    // A send that gives up waiting after a deadline.
    let late = MetricResult {
        service: "search".into(),
        avg_latency: 4.2,
        count: 1,
    };
    match sink
        .send_with_timeout(SinkRecord::new(&late).key("search"), Duration::from_secs(5))
        .await
    {
        Ok(m) => println!("with a 5 s deadline: written at offset {}", m.offset),
        Err(e) if e.possibly_persisted() => println!("no answer in time, may still arrive: {e}"),
        Err(e) => println!("not written: {e}"),
    }

    sink.close(Duration::from_secs(10)).await?;
    let m = sink.metrics();
    println!("\nsink metrics:");
    println!("  sent           {}", m.sent);
    println!("  failed         {}", m.failed);
    println!("  refused        {}", m.refused);
    println!("  bytes sent     {}", m.bytes_sent);
    println!("  retries        {}", m.retries);
    println!("  avg latency    {:?}", m.avg_latency);
    println!("  max latency    {:?}", m.max_latency);
    println!(
        "  breaker        {:?} ({} trips)",
        m.breaker_state, m.breaker_trips
    );
    println!("  dead-lettered  {}", m.dead_lettered);
    if let Some(error) = &m.last_error {
        println!("  last error     {error}");
    }
    producer.close(Duration::from_secs(10)).await?;
    if m.sent != 2_002 || failures.load(Ordering::Relaxed) != 0 {
        return Err(format!("{} of 2002 records delivered", m.sent).into());
    }
    Ok(())
}
