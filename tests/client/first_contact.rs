//! First contact with a cluster: what a client says when the bootstrap
//! servers are wrong or unreachable, when a topic name is invalid, and when
//! the cluster names a broker it does not list. Every client is checked
//! against the in-process fake cluster or against addresses nothing serves.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use protocol_tests::FakeCluster;
use smartkafka::consumer::{PartitionReader, ReaderConfig, StartOffset};
use smartkafka::protocol::KafkaCode;
use smartkafka::{AdminClient, ClientConfig, Error, ErrorKind, NewTopic, Producer, Record};

/// How long a build that must fail fast may take before the test calls it
/// a hang. A bound on a hang, not a timing measurement: `max_block` is a
/// minute, so without the fail-fast rule the build would still be waiting.
const HANG: Duration = Duration::from_secs(10);

async fn build_idempotent(bootstrap: &str) -> Result<Producer, Error> {
    let build = Producer::builder()
        .bootstrap_servers(bootstrap)
        .max_block(Duration::from_secs(60))
        .build();
    tokio::time::timeout(HANG, build)
        .await
        .expect("build() waited for max_block instead of failing fast")
}

#[tokio::test]
async fn a_refused_bootstrap_server_fails_the_build_fast_with_the_os_error() {
    let Err(err) = build_idempotent("127.0.0.1:1").await else {
        panic!("a producer without a cluster");
    };
    assert_eq!(err.kind(), &ErrorKind::NoBrokerAvailable, "{err}");
    let message = err.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(
        message.to_lowercase().contains("refused"),
        "the OS error is in the message: {message}"
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_fails_the_build_fast_as_a_resolution_error() {
    let Err(err) = build_idempotent("no-such-host.invalid:9092").await else {
        panic!("a producer without a cluster");
    };
    assert_eq!(err.kind(), &ErrorKind::NoBrokerAvailable, "{err}");
    assert!(
        err.to_string()
            .contains("resolving no-such-host.invalid:9092"),
        "{err}"
    );
}

#[tokio::test]
async fn every_bootstrap_server_is_named_with_its_own_failure() {
    let Err(err) = build_idempotent("127.0.0.1:1,no-such-host.invalid:9092").await else {
        panic!("a producer without a cluster");
    };
    let message = err.to_string();
    assert!(message.contains("connecting to 127.0.0.1:1"), "{message}");
    assert!(
        message.contains("resolving no-such-host.invalid:9092"),
        "{message}"
    );
}

/// A producer without idempotence has no producer id to wait for, so its
/// `build()` returns at once; its first records must then fail as soon as
/// the start-up rule finds the cluster unreachable, with the OS error,
/// rather than wait out `max_block` for metadata that cannot come.
#[tokio::test]
async fn records_of_a_producer_without_idempotence_fail_fast_on_a_refused_bootstrap() {
    let producer = Producer::builder()
        .bootstrap_servers("127.0.0.1:1")
        .idempotence(false)
        .max_block(Duration::from_secs(60))
        .build()
        .await
        .expect("a producer without idempotence builds without a cluster");
    let first = producer
        .try_send(Record::new("events").value("a"))
        .expect("accepted for delivery");
    let err = tokio::time::timeout(HANG, first)
        .await
        .expect("the record waited for max_block instead of failing fast")
        .expect_err("no cluster, no delivery");
    assert_eq!(err.kind(), &ErrorKind::NoBrokerAvailable, "{err}");
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
    assert!(!err.possibly_persisted(), "{err}");
    // Later records for the same topic fail at once, with the same cause.
    let later = tokio::time::timeout(HANG, async {
        producer.send(Record::new("events").value("b")).await?.await
    })
    .await
    .expect("a later record waited instead of failing fast")
    .expect_err("no cluster, no delivery");
    assert_eq!(later.kind(), &ErrorKind::NoBrokerAvailable, "{later}");
}

#[tokio::test]
async fn malformed_bootstrap_servers_are_config_errors_for_every_client() {
    let field = ErrorKind::Config {
        field: "bootstrap_servers",
    };
    for bad in [
        "http://localhost:9092",
        "localhost",
        "localhost:9092,,b:9092",
    ] {
        let err = build_idempotent(bad).await.expect_err(bad);
        assert_eq!(err.kind(), &field, "producer, {bad}: {err}");
        let err = AdminClient::connect(ClientConfig::new(bad))
            .await
            .expect_err(bad);
        assert_eq!(err.kind(), &field, "admin, {bad}: {err}");
        let err = PartitionReader::connect(ReaderConfig::new(bad))
            .await
            .expect_err(bad);
        assert_eq!(err.kind(), &field, "reader, {bad}: {err}");
    }
}

#[tokio::test]
async fn the_admin_client_names_the_cause_too() {
    let err = AdminClient::connect(ClientConfig::new("127.0.0.1:1"))
        .await
        .expect_err("no cluster");
    assert_eq!(err.kind(), &ErrorKind::NoBrokerAvailable, "{err}");
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
}

// ---------------------------------------------------------------------------
// Topic names: Kafka's rules, checked before anything is asked of a broker.

fn illegal_names() -> Vec<String> {
    vec![
        "bad topic!".to_string(),
        String::new(),
        ".".to_string(),
        "..".to_string(),
        "a".repeat(250),
    ]
}

fn assert_invalid_topic(err: &Error, name: &str) {
    assert_eq!(
        err.kafka_code(),
        Some(KafkaCode::INVALID_TOPIC_EXCEPTION),
        "{name:?}: {err}"
    );
    assert!(err.to_string().contains("topic name"), "{err}");
}

#[tokio::test]
async fn the_producer_refuses_an_illegal_topic_name_at_once() {
    let cluster = FakeCluster::builder().topic("events", 1).build().await;
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .max_block(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    for name in illegal_names() {
        let sent = tokio::time::timeout(HANG, producer.send(Record::new(name.as_str()).value("v")))
            .await
            .expect("send waited for metadata that cannot come");
        let err = sent.expect_err("an illegal topic name is refused");
        assert_invalid_topic(&err, &name);
        // try_send reports it through the delivery future.
        let delivery = producer
            .try_send(Record::new(name.as_str()).value("v"))
            .unwrap();
        let err = tokio::time::timeout(HANG, delivery)
            .await
            .expect("the delivery future waited")
            .expect_err("an illegal topic name is refused");
        assert_invalid_topic(&err, &name);
    }
    // A legal name still goes through.
    producer
        .send_and_wait(Record::new("events").value("v"))
        .await
        .unwrap();
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn admin_and_reader_refuse_an_illegal_topic_name_without_a_request() {
    let cluster = FakeCluster::builder().topic("events", 1).build().await;
    let admin = AdminClient::connect(ClientConfig::new(&cluster.bootstrap_servers()))
        .await
        .unwrap();
    let mut reader = PartitionReader::connect(ReaderConfig::new(&cluster.bootstrap_servers()))
        .await
        .unwrap();
    let metadata_requests = cluster.request_count(ApiKey::Metadata);
    for name in illegal_names() {
        let err = admin
            .create_topics(&[NewTopic::new(name.as_str(), 1)])
            .await
            .expect_err("an illegal topic name is refused");
        assert_invalid_topic(&err, &name);
        let err = admin
            .list_offsets(&name, smartkafka::OffsetSpec::Latest)
            .await
            .expect_err("an illegal topic name is refused");
        assert_invalid_topic(&err, &name);
        let err = reader
            .assign(&[(name.as_str(), 0, StartOffset::Earliest)])
            .await
            .expect_err("an illegal topic name is refused");
        assert_invalid_topic(&err, &name);
    }
    assert_eq!(cluster.request_count(ApiKey::CreateTopics), 0);
    assert_eq!(cluster.request_count(ApiKey::Metadata), metadata_requests);
}

#[tokio::test]
async fn the_fake_cluster_answers_an_illegal_name_as_a_broker_does() {
    let cluster = FakeCluster::builder()
        .topic("events", 1)
        .auto_create_topics(1)
        .build()
        .await;
    let admin = AdminClient::connect(ClientConfig::new(&cluster.bootstrap_servers()))
        .await
        .unwrap();
    // Metadata does not check names here: the broker's answer is seen.
    let metadata = admin
        .metadata(Some(&["bad topic!", "no-such-topic"]))
        .await
        .unwrap();
    assert_eq!(
        metadata.topic("bad topic!").and_then(|t| t.error),
        Some(KafkaCode::INVALID_TOPIC_EXCEPTION)
    );
    assert_eq!(
        metadata.topic("no-such-topic").and_then(|t| t.error),
        Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION)
    );
    assert!(!cluster.topics().contains(&"bad topic!".to_string()));
}

// ---------------------------------------------------------------------------
// Broker ids the cluster names but does not list.

#[tokio::test]
async fn topics_are_created_when_the_controller_is_not_a_listed_broker() {
    let cluster = FakeCluster::builder().brokers(3).build().await;
    // As librdkafka's mock cluster reports it: controller 0, brokers 1-3.
    cluster.set_controller_id(Some(0));
    let admin = AdminClient::connect(ClientConfig::new(&cluster.bootstrap_servers()))
        .await
        .unwrap();
    assert_eq!(
        admin.metadata(Some(&[])).await.unwrap().controller_id,
        Some(0)
    );
    admin
        .create_topics(&[NewTopic::new("orders", 3)])
        .await
        .unwrap();
    assert_eq!(cluster.partition_count("orders"), Some(3));

    // No controller at all (-1) goes to any broker as well.
    cluster.set_controller_id(Some(-1));
    admin
        .create_topics(&[NewTopic::new("payments", 2)])
        .await
        .unwrap();
    assert_eq!(cluster.partition_count("payments"), Some(2));
}

#[tokio::test]
async fn an_unlisted_group_coordinator_is_reached_where_find_coordinator_says() {
    let cluster = FakeCluster::builder()
        .brokers(2)
        .topic("t", 1)
        .build()
        .await;
    let (leader, _) = cluster.leader("t", 0).unwrap();
    // A group coordinated by the broker that does not lead `t-0`, which is
    // then left out of Metadata: the reader can still fetch from the leader.
    let group = (0..100)
        .map(|i| format!("group-{i}"))
        .find(|g| cluster.group_coordinator(g) != leader)
        .expect("a group on the other broker");
    let coordinator = cluster.group_coordinator(&group);
    cluster.commit_offset(&group, "t", 0, 5);
    cluster.set_listed_in_metadata(coordinator, false);

    let admin = AdminClient::connect(ClientConfig::new(&cluster.bootstrap_servers()))
        .await
        .unwrap();
    assert!(
        admin
            .metadata(Some(&[]))
            .await
            .unwrap()
            .broker(coordinator)
            .is_none()
    );
    let offsets = admin.committed_offsets(&group, "t", &[0]).await.unwrap();
    assert_eq!(offsets.get(&0), Some(&Some(5)));

    let mut reader = PartitionReader::connect(ReaderConfig::new(&cluster.bootstrap_servers()))
        .await
        .unwrap();
    reader
        .assign(&[("t", 0, StartOffset::Committed(group.clone()))])
        .await
        .unwrap();
    assert_eq!(reader.position("t", 0), Some(5));
}
