//! The wire layer against an independent broker implementation: the
//! librdkafka mock cluster (in-process, 3 brokers), with rust-rdkafka's own
//! producer and consumer as reference clients.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use rdkafka::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaApiKey;
use smartkafka::{AdminClient, ClientConfig, ErrorKind, NewTopic, OffsetSpec};

fn mock() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    MockCluster::new(3).expect("librdkafka mock cluster")
}

async fn admin(
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
) -> AdminClient {
    AdminClient::connect(
        ClientConfig::new(&cluster.bootstrap_servers()).request_timeout(Duration::from_secs(5)),
    )
    .await
    .expect("connect to the mock cluster")
}

/// The mock names a controller that is not among its brokers (0, brokers
/// 1-3). CreateTopics then goes to a listed broker (any broker forwards it
/// since KIP-590) instead of failing as `unknown broker 0`; this mock has
/// no CreateTopics, so what comes back is that broker's answer.
#[tokio::test]
async fn create_topics_goes_to_a_listed_broker_when_the_controller_is_not_one() {
    let cluster = mock();
    let admin = admin(&cluster).await;
    let metadata = admin.metadata(Some(&[])).await.unwrap();
    let controller = metadata.controller_id.expect("the mock names a controller");
    assert!(
        metadata.broker(controller).is_none(),
        "controller {controller}"
    );
    let err = admin
        .create_topics(&[NewTopic::new("created", 4)])
        .await
        .expect_err("the mock has no CreateTopics");
    assert_eq!(err.kind(), &ErrorKind::UnsupportedApi, "{err}");
    assert!(err.to_string().contains("CreateTopics"), "{err}");
}

#[tokio::test]
async fn negotiates_the_highest_common_versions_with_the_mock() {
    let cluster = mock();
    let admin = admin(&cluster).await;
    let metadata = admin.metadata(None).await.unwrap();
    for broker in &metadata.brokers {
        let v = admin.api_versions(broker.id).await.unwrap();
        // librdkafka 2.12's mock advertises Produce v0-10, Fetch v0-16,
        // Metadata v0-12, InitProducerId v0-4, ListOffsets v0-7 and
        // ApiVersions v0-2 (so our v3 request is refused with
        // UNSUPPORTED_VERSION and the exchange is repeated at a lower version).
        assert_eq!(v.advertised(ApiKey::Produce).map(|r| r.max), Some(10));
        assert_eq!(v.get(ApiKey::Produce), Some(10));
        assert_eq!(
            v.get(ApiKey::Fetch),
            Some(12),
            "our ceiling: Fetch v13 uses topic ids"
        );
        assert_eq!(v.get(ApiKey::Metadata), Some(12));
        assert_eq!(v.get(ApiKey::InitProducerId), Some(4));
        assert_eq!(v.get(ApiKey::ListOffsets), Some(7));
        assert_eq!(v.get(ApiKey::ApiVersions), Some(2));
    }
}

#[tokio::test]
async fn a_broker_advertising_lower_versions_gets_lower_versions() {
    let cluster = mock();
    cluster
        .apiversion(RDKafkaApiKey::Produce, Some(3), Some(7))
        .unwrap();
    cluster
        .apiversion(RDKafkaApiKey::InitProducerId, Some(-1), Some(-1))
        .unwrap();
    let admin = admin(&cluster).await;
    let v = admin.api_versions(1).await.unwrap();
    assert_eq!(v.get(ApiKey::Produce), Some(7));
    let err = v.require(ApiKey::InitProducerId).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::UnsupportedApi);
    assert!(err.to_string().contains("InitProducerId"), "{err}");
}

#[tokio::test]
async fn reads_the_metadata_of_a_three_broker_cluster() {
    let cluster = mock();
    cluster.create_topic("events", 6, 3).unwrap();
    let admin = admin(&cluster).await;
    let metadata = admin.metadata(Some(&["events", "missing"])).await.unwrap();
    assert_eq!(
        metadata.brokers.iter().map(|b| b.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let events = metadata.topic("events").unwrap();
    assert_eq!(events.error, None);
    assert_eq!(events.partitions.len(), 6);
    for p in &events.partitions {
        let leader = p.leader.expect("every partition has a leader");
        assert!((1..=3).contains(&leader));
        assert_eq!(p.replicas.len(), 3);
        assert!(
            p.leader_epoch.is_some(),
            "Metadata v12 carries leader epochs"
        );
    }
    let missing = metadata.topic("missing").unwrap();
    assert_eq!(
        missing.error,
        Some(smartkafka::protocol::KafkaCode::UNKNOWN_TOPIC_OR_PARTITION)
    );

    // rust-rdkafka's view of the same cluster agrees.
    let consumer: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    let theirs = consumer
        .fetch_metadata(Some("events"), Duration::from_secs(5))
        .unwrap();
    let topic = &theirs.topics()[0];
    for p in topic.partitions() {
        let ours = &events.partitions[p.id() as usize];
        assert_eq!(ours.leader, Some(p.leader()));
        assert_eq!(ours.replicas, p.replicas());
    }
}

#[tokio::test]
async fn list_offsets_agrees_with_rdkafka_watermarks() {
    let cluster = mock();
    cluster.create_topic("offsets", 3, 1).unwrap();
    let producer: FutureProducer = RdConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("linger.ms", "1")
        .create()
        .unwrap();
    for i in 0..90u32 {
        let key = format!("k{i}");
        producer
            .send(
                FutureRecord::to("offsets")
                    .key(&key)
                    .payload("v")
                    .partition((i % 3) as i32),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
    let admin = admin(&cluster).await;
    let latest = admin
        .list_offsets("offsets", OffsetSpec::Latest)
        .await
        .unwrap();
    let earliest = admin
        .list_offsets("offsets", OffsetSpec::Earliest)
        .await
        .unwrap();
    let consumer: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    let mut total = 0;
    for partition in 0..3 {
        let (low, high) = consumer
            .fetch_watermarks("offsets", partition, Duration::from_secs(5))
            .unwrap();
        assert_eq!(latest[&partition], high, "partition {partition}");
        assert_eq!(earliest[&partition], low, "partition {partition}");
        total += high - low;
    }
    assert_eq!(total, 90);
}

#[tokio::test]
async fn a_request_timeout_closes_the_connection_and_the_next_call_reconnects() {
    let cluster = mock();
    let admin = AdminClient::connect(
        ClientConfig::new(&cluster.bootstrap_servers()).request_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    for id in 1..=3 {
        cluster
            .broker_round_trip_time(id, Duration::from_millis(1500))
            .unwrap();
    }
    let err = admin.metadata(None).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::RequestTimeout, "{err}");
    assert!(err.is_retriable());
    for id in 1..=3 {
        cluster.broker_round_trip_time(id, Duration::ZERO).unwrap();
    }
    // The timed-out connection was closed; a fresh one answers correctly
    // (a reused one would hand us the late response to the old request).
    let metadata = admin.metadata(None).await.unwrap();
    assert_eq!(metadata.brokers.len(), 3);
}

#[tokio::test]
async fn an_unreachable_cluster_is_a_clear_retriable_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = AdminClient::connect(ClientConfig::new(&addr.to_string()))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), &ErrorKind::NoBrokerAvailable, "{err}");
    assert!(err.to_string().contains(&addr.to_string()));
    assert!(err.is_retriable());
}
