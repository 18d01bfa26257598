//! The wire layer against our own fake cluster (protocol-tests), which
//! decodes with kafka-protocol rather than our code and can inject faults
//! per API key.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use protocol_tests::{FakeCluster, Fault};
use smartkafka::protocol::{KafkaCode, client_range};
use smartkafka::{AdminClient, ClientConfig, ErrorKind, NewTopic, OffsetSpec};

use crate::support;

async fn admin(cluster: &FakeCluster, timeout: Duration) -> AdminClient {
    AdminClient::connect(ClientConfig::new(&cluster.bootstrap_servers()).request_timeout(timeout))
        .await
        .expect("connect to the fake cluster")
}

#[tokio::test]
async fn negotiates_against_what_each_broker_advertises() {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .api_versions(Some(2), |t| {
            t.set_max(ApiKey::Produce, 7);
            t.set_max(ApiKey::Metadata, 9);
            t.set_max(ApiKey::Fetch, 8);
            t.remove(ApiKey::InitProducerId);
        })
        .build()
        .await;
    let admin = admin(&cluster, Duration::from_secs(5)).await;
    for id in [1, 3] {
        let v = admin.api_versions(id).await.unwrap();
        let advertised = cluster.api_versions(id).unwrap();
        for api in [
            ApiKey::Produce,
            ApiKey::Metadata,
            ApiKey::Fetch,
            ApiKey::InitProducerId,
        ] {
            let (_, theirs) = advertised.range(api).unwrap();
            let ours = client_range(api).unwrap().max;
            assert_eq!(v.get(api), Some(theirs.min(ours)), "broker {id} {api:?}");
        }
    }
    let v = admin.api_versions(2).await.unwrap();
    assert_eq!(v.get(ApiKey::Produce), Some(7));
    assert_eq!(v.get(ApiKey::Metadata), Some(9));
    assert_eq!(v.get(ApiKey::Fetch), Some(8));
    let err = v.require(ApiKey::InitProducerId).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::UnsupportedApi);
}

#[tokio::test]
async fn creates_topics_and_reads_their_metadata_and_offsets() {
    let cluster = FakeCluster::builder().brokers(3).build().await;
    let admin = admin(&cluster, Duration::from_secs(5)).await;
    admin
        .create_topics(&[NewTopic::new("orders", 6), NewTopic::new("audit", 2)])
        .await
        .unwrap();
    let err = admin
        .create_topics(&[NewTopic::new("orders", 6)])
        .await
        .unwrap_err();
    assert_eq!(err.kafka_code(), Some(KafkaCode::TOPIC_ALREADY_EXISTS));
    assert!(!err.is_retriable());

    let metadata = admin.metadata(None).await.unwrap();
    assert_eq!(metadata.brokers.len(), 3);
    let orders = metadata.topic("orders").unwrap();
    assert_eq!(orders.partitions.len(), 6);
    for p in &orders.partitions {
        let (leader, epoch) = cluster.leader("orders", p.id).unwrap();
        assert_eq!(p.leader, Some(leader));
        assert_eq!(p.leader_epoch, Some(epoch));
    }
    assert_eq!(metadata.topic("audit").unwrap().partitions.len(), 2);

    // Leadership moves are visible with the new epoch.
    let new_epoch = cluster.set_leader("orders", 0, 3);
    let metadata = admin.metadata(Some(&["orders"])).await.unwrap();
    let p0 = &metadata.topic("orders").unwrap().partitions[0];
    assert_eq!((p0.leader, p0.leader_epoch), (Some(3), Some(new_epoch)));

    let latest = admin
        .list_offsets("orders", OffsetSpec::Latest)
        .await
        .unwrap();
    assert_eq!(latest.len(), 6);
    for (partition, offset) in latest {
        assert_eq!(offset, cluster.high_watermark("orders", partition));
    }
}

#[tokio::test]
async fn an_injected_broker_error_is_typed_and_classified() {
    let cluster = support::cluster(1, "t", 1).await;
    let admin = admin(&cluster, Duration::from_secs(5)).await;
    cluster.inject(
        Fault::new(ApiKey::ListOffsets).error_code(KafkaCode::NOT_LEADER_OR_FOLLOWER.code()),
    );
    let err = admin
        .list_offsets("t", OffsetSpec::Latest)
        .await
        .unwrap_err();
    assert_eq!(
        err.kafka_code(),
        Some(KafkaCode::NOT_LEADER_OR_FOLLOWER),
        "{err}"
    );
    assert!(err.is_retriable() && !err.is_fatal());
    // The fault is used up; the next call succeeds.
    assert_eq!(
        admin.list_offsets("t", OffsetSpec::Latest).await.unwrap()[&0],
        0
    );
}

#[tokio::test]
async fn a_slow_response_times_out_and_closes_only_that_connection() {
    let cluster = support::cluster(1, "t", 1).await;
    let admin = admin(&cluster, Duration::from_millis(300)).await;
    cluster.inject(Fault::new(ApiKey::Metadata).delay(Duration::from_millis(1200)));
    let err = admin.metadata(None).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::RequestTimeout, "{err}");
    // A new connection answers; the late response never reaches a caller.
    let metadata = admin.metadata(None).await.unwrap();
    assert!(metadata.topic("t").is_some());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(admin.metadata(None).await.unwrap().topic("t").is_some());
}

#[tokio::test]
async fn a_dropped_connection_fails_the_request_and_the_next_call_reconnects() {
    let cluster = support::cluster(1, "t", 1).await;
    let admin = admin(&cluster, Duration::from_secs(5)).await;
    cluster.inject(Fault::new(ApiKey::Metadata).drop_connection());
    let err = admin.metadata(None).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Io, "{err}");
    assert!(err.is_retriable());
    assert!(admin.metadata(None).await.unwrap().topic("t").is_some());
}
