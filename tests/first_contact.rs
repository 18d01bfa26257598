//! First contact with a cluster: what a client says when the bootstrap
//! servers are wrong or unreachable, when a topic name is invalid, and when
//! the cluster names a broker it does not list. Every client is checked
//! against the in-process fake cluster or against addresses nothing serves.

use std::time::Duration;

use smartkafka::consumer::{PartitionReader, ReaderConfig};
use smartkafka::{AdminClient, ClientConfig, Error, ErrorKind, Producer};

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
