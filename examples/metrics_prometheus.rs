//! Metrics through the `metrics` facade, exported for Prometheus: a typed
//! sink writes 500 orders, a processor runner handles them (the ones with
//! an odd total go to a dead-letter topic), and the exporter serves what
//! both counted on an HTTP port, as a Prometheus server would scrape it.
//! The example prints the smartkafka lines of that page, then keeps serving
//! it until ctrl-c when given `--serve`.
//!
//! ```text
//! cargo run --example metrics_prometheus --features metrics              # embedded cluster, port 9464
//! METRICS_PORT=9100 cargo run --example metrics_prometheus --features metrics -- --serve
//! KAFKA_BOOTSTRAP=localhost:9092 cargo run --example metrics_prometheus --features metrics
//! ```
//!
//! Against your own cluster the topics `orders` (3 partitions) and
//! `orders.dlt` must exist (or be created automatically).

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use smartkafka::Producer;
use smartkafka::consumer::{AutoOffsetReset, ConsumedRecord, Consumer};
use smartkafka::processor::{ProcessError, Processor, ProcessorRunner};
use smartkafka::serialization::Utf8;
use smartkafka::sink::{Sink, SinkRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOPIC: &str = "orders";
const DEAD_LETTERS: &str = "orders.dlt";
const ORDERS: u64 = 500;

/// Refuses orders whose total is odd.
struct Orders;

impl Processor for Orders {
    async fn process(&self, record: &ConsumedRecord) -> Result<(), ProcessError> {
        let total: u64 =
            std::str::from_utf8(record.value.as_deref().unwrap_or_default())?.parse()?;
        if total % 2 == 1 {
            return Err(ProcessError::permanent(format!("odd total {total}")));
        }
        Ok(())
    }
}

/// The page the exporter serves at `addr`, fetched over plain HTTP/1.1.
async fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("METRICS_PORT").map_or(Ok(9464), |p| p.parse())?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()?;
    println!("serving metrics at http://{addr}/metrics");

    let (bootstrap, _embedded) = match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(servers) if !servers.trim().is_empty() => (servers, None),
        _ => {
            let cluster = protocol_tests::FakeCluster::builder()
                .topic(TOPIC, 3)
                .topic(DEAD_LETTERS, 1)
                .build()
                .await;
            (cluster.bootstrap_servers(), Some(cluster))
        }
    };

    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .build()
        .await?;
    let sink: Sink<str, str> = Sink::builder(producer.clone(), TOPIC)
        .key_serializer(Utf8)
        .value_serializer(Utf8)
        .build()?;
    for i in 0..ORDERS {
        let key = format!("customer-{}", i % 20);
        let total = (i * 7).to_string();
        // Delivery is awaited by `close` below.
        let _delivery = sink
            .send(SinkRecord::new(total.as_str()).key(key.as_str()))
            .await?;
    }
    sink.close(Duration::from_secs(10)).await?;

    let consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id("orders-metrics-example")
        .enable_auto_commit(false)
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .build()
        .await?;
    let runner = ProcessorRunner::builder(consumer, producer.clone(), Orders)
        .topics(&[TOPIC])
        .dead_letter_topic(DEAD_LETTERS)
        .build()?;
    let stats = runner.stats();
    let summary = runner
        .run_until(async move {
            while {
                let s = stats.snapshot();
                s.processed + s.dead_lettered < ORDERS
            } {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await?;
    println!(
        "processed {}, dead-lettered {}",
        summary.processed, summary.dead_lettered
    );

    for line in scrape(addr).await?.lines() {
        if line.starts_with("smartkafka_") && !line.contains("_bucket") {
            println!("  {line}");
        }
    }
    if std::env::args().any(|a| a == "--serve") {
        println!("serving until ctrl-c");
        tokio::signal::ctrl_c().await?;
    }
    producer.close(Duration::from_secs(5)).await?;
    Ok(())
}
