//! The `metrics` feature end to end: a typed sink and a processor runner
//! against the fake cluster, their counters exported by
//! `metrics-exporter-prometheus` on an HTTP port, the page scraped over
//! HTTP and parsed by `prometheus-parse` (neither of them ours), and every
//! figure checked against what the test did and read back.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use prometheus_parse::{Sample, Scrape, Value};
use protocol_tests::FakeCluster;
use smartkafka::Producer;
use smartkafka::consumer::{AutoOffsetReset, ConsumedRecord, Consumer};
use smartkafka::processor::{ProcessError, Processor, ProcessorRunner};
use smartkafka::serialization::Utf8;
use smartkafka::sink::{Sink, SinkRecord};
use smartkafka::telemetry::names;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOPIC: &str = "orders";
const DEAD_LETTERS: &str = "orders.dlt";
const ORDERS: u64 = 60;

/// Refuses orders whose number is a multiple of 7 (9 of the 60).
struct Orders;

impl Processor for Orders {
    async fn process(&self, record: &ConsumedRecord) -> Result<(), ProcessError> {
        let n: u64 = std::str::from_utf8(record.value.as_deref().unwrap_or_default())?.parse()?;
        if n.is_multiple_of(7) {
            return Err(ProcessError::permanent(format!("order {n} refused")));
        }
        Ok(())
    }
}

async fn scrape(addr: SocketAddr) -> Scrape {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("exporter");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The one sample of `metric` whose labels include `labels`.
fn sample<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> &'a Sample {
    let found: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{metric} {labels:?}: {found:?}");
    found[0]
}

fn number(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{}: not a number: {other:?}", sample.metric),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_and_processor_figures_reach_a_prometheus_scrape() {
    // A free port for the exporter's listener.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .expect("the exporter");

    let cluster = FakeCluster::builder()
        .topic(TOPIC, 3)
        .topic(DEAD_LETTERS, 1)
        .build()
        .await;
    let bootstrap = cluster.bootstrap_servers();
    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .build()
        .await
        .unwrap();
    let sink: Sink<str, str> = Sink::builder(producer.clone(), TOPIC)
        .key_serializer(Utf8)
        .value_serializer(Utf8)
        .build()
        .unwrap();
    let mut bytes = 0;
    for n in 1..=ORDERS {
        let (key, value) = (format!("customer-{}", n % 5), n.to_string());
        bytes += key.len() + value.len();
        // Delivery is awaited by `close` below.
        let _delivery = sink
            .send(SinkRecord::new(value.as_str()).key(key.as_str()))
            .await
            .unwrap();
    }
    sink.close(Duration::from_secs(10)).await.unwrap();

    let consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id("orders-metrics")
        .enable_auto_commit(false)
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .build()
        .await
        .unwrap();
    let runner = ProcessorRunner::builder(consumer, producer.clone(), Orders)
        .topics(&[TOPIC])
        .dead_letter_topic(DEAD_LETTERS)
        .build()
        .unwrap();
    let stats = runner.stats();
    let summary = runner
        .run_until(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while tokio::time::Instant::now() < deadline {
                let s = stats.snapshot();
                if s.processed + s.dead_lettered >= ORDERS {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
    let refused = (1..=ORDERS).filter(|n| n.is_multiple_of(7)).count() as u64;
    assert_eq!(summary.dead_lettered, refused);
    assert_eq!(summary.processed, ORDERS - refused);
    // The log agrees: every order once, the refused ones dead-lettered.
    let in_log: usize = (0..3).map(|p| cluster.records(TOPIC, p).len()).sum();
    assert_eq!(in_log as u64, ORDERS);
    assert_eq!(cluster.records(DEAD_LETTERS, 0).len() as u64, refused);
    producer.close(Duration::from_secs(5)).await.unwrap();

    let page = scrape(addr).await;
    let topic = [("topic", TOPIC)];
    assert_eq!(
        number(sample(&page, names::SINK_SENT, &topic)),
        ORDERS as f64
    );
    assert_eq!(
        number(sample(&page, names::SINK_SENT_BYTES, &topic)),
        bytes as f64
    );
    assert!(
        !page.samples.iter().any(|s| s.metric == names::SINK_FAILED),
        "no sink failure"
    );
    match &sample(&page, names::SINK_LATENCY, &topic).value {
        Value::Summary(quantiles) => assert!(!quantiles.is_empty()),
        Value::Histogram(buckets) => assert!(!buckets.is_empty()),
        other => panic!("latency: {other:?}"),
    }
    let latencies = sample(&page, &format!("{}_count", names::SINK_LATENCY), &topic);
    assert_eq!(number(latencies), ORDERS as f64);
    assert_eq!(
        number(sample(&page, names::CONSUMED, &topic)),
        ORDERS as f64
    );
    assert_eq!(
        number(sample(&page, names::PROCESSED, &topic)),
        (ORDERS - refused) as f64
    );
    assert_eq!(
        number(sample(&page, names::DEAD_LETTERED, &topic)),
        refused as f64
    );
    // Every partition read to its end: lag 0.
    for p in ["0", "1", "2"] {
        let lag = sample(&page, names::LAG, &[("topic", TOPIC), ("partition", p)]);
        assert_eq!(number(lag), 0.0, "partition {p}");
    }
}
