//! The processor runner against the fake cluster: the shared scenarios of
//! `support::processor_runs` (dead-letter topic, retry topic, undecodable
//! records, key order across a crash), plus what only the fake can show: a
//! graceful shutdown commits and leaves the group, and partitions moving to
//! a new member are handed over without losing records. Commits are read
//! from the cluster's own state.

use std::sync::Arc;
use std::time::Duration;

use protocol_tests::FakeCluster;
use smartkafka::Producer;
use smartkafka::consumer::Assignor;
use smartkafka::processor::{ProcessorRunner, RunSummary};
use tokio::time::Instant;

use crate::support::processor_runs::{self as runs, Peer};
use crate::support::recorder::Recorder;

async fn cluster(topics: &[(&str, i32)]) -> FakeCluster {
    let mut builder = FakeCluster::builder()
        .brokers(1)
        .group_initial_rebalance_delay(Duration::from_millis(20))
        .group_session_timeout_range(Duration::from_millis(500), Duration::from_secs(60));
    for (topic, partitions) in topics {
        builder = builder.topic(topic, *partitions);
    }
    builder.build().await
}

impl Peer for FakeCluster {
    fn bootstrap(&self) -> String {
        self.bootstrap_servers()
    }

    fn session(&self) -> Duration {
        Duration::from_secs(3)
    }

    async fn committed_and_ends(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Vec<(i64, i64)> {
        (0..partitions)
            .map(|p| {
                (
                    self.committed_offset(group, topic, p).unwrap_or(-1),
                    self.high_watermark(topic, p),
                )
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_records_reach_the_dead_letter_topic_with_their_headers_and_all_is_committed() {
    let cluster = cluster(runs::DEAD_LETTER_TOPICS).await;
    runs::failing_records_reach_the_dead_letter_topic(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_failing_once_succeeds_from_the_retry_topic_after_its_delay() {
    let cluster = cluster(runs::RETRY_TOPICS).await;
    runs::a_record_failing_once_succeeds_from_the_retry_topic(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_is_dead_lettered_and_its_partition_goes_on() {
    let cluster = cluster(runs::UNDECODABLE_TOPICS).await;
    runs::an_undecodable_record_is_dead_lettered(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stay_in_order_under_concurrency_and_a_crash_loses_nothing() {
    let cluster = cluster(runs::ORDERED_TOPICS).await;
    runs::keys_stay_in_order_across_a_crash(&cluster, Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_commits_leaves_the_group_and_nothing_is_processed_twice() {
    let cluster = cluster(&[("jobs", 2), ("jobs.dlt", 1)]).await;
    let producer = runs::producer(&cluster.bootstrap_servers()).await;
    let records: Vec<(Option<String>, Vec<u8>)> = (0..100)
        .map(|i| (Some(format!("k{}", i % 7)), format!("job-{i}").into_bytes()))
        .collect();
    runs::write(&producer, "jobs", &records).await;
    // A long session: a member that did not leave would hold its
    // partitions for 10 s.
    let session = Duration::from_secs(10);

    let processor = Recorder::new(|_, _| Ok(()));
    let runner = ProcessorRunner::builder(
        runs::consumer(
            &cluster.bootstrap_servers(),
            "graceful",
            session,
            Assignor::Range,
        )
        .await,
        producer.clone(),
        processor.clone(),
    )
    .topics(&["jobs"])
    .max_concurrency(4)
    // Commits only at shutdown (and on revocation).
    .commit_interval(Duration::from_secs(3600))
    .build()
    .unwrap();
    let stats = runner.stats();
    let summary = tokio::time::timeout(
        Duration::from_secs(20),
        runner.run_until(runs::until(stats, |s| s.processed == 100)),
    )
    .await
    .expect("the run ends")
    .expect("the run succeeds");
    assert_eq!(summary.processed, 100);
    for p in 0..2 {
        assert_eq!(
            cluster.committed_offset("graceful", "jobs", p),
            Some(cluster.high_watermark("jobs", p)),
            "partition {p} committed at shutdown"
        );
    }
    assert!(
        cluster.group_members("graceful").is_empty(),
        "the member left the group"
    );

    // A new member gets both partitions at once and has nothing to do.
    let again = Recorder::new(|_, _| Ok(()));
    let runner = ProcessorRunner::builder(
        runs::consumer(
            &cluster.bootstrap_servers(),
            "graceful",
            session,
            Assignor::Range,
        )
        .await,
        producer.clone(),
        again.clone(),
    )
    .topics(&["jobs"])
    .build()
    .unwrap();
    let started = Instant::now();
    let assigned = again.assigned.clone();
    let summary = tokio::time::timeout(
        Duration::from_secs(15),
        runner.run_until(async move {
            while assigned
                .lock()
                .unwrap()
                .iter()
                .map(|(_, n)| n)
                .sum::<usize>()
                < 2
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }),
    )
    .await
    .expect("the second run ends")
    .expect("the second run succeeds");
    let (at, _) = again.assigned.lock().unwrap()[0];
    assert!(
        at - started < session / 2,
        "assigned after {:?}: the first member had not left",
        at - started
    );
    assert_eq!(
        summary.consumed,
        0,
        "nothing processed twice: {:?}",
        again.calls()
    );
}

/// Runs a member of group `moving` (cooperative-sticky) until `stop`.
async fn spawn_member(
    cluster: &FakeCluster,
    producer: &Producer,
    recorder: Recorder,
    stop: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<Result<RunSummary, smartkafka::Error>> {
    let consumer = runs::consumer(
        &cluster.bootstrap_servers(),
        "moving",
        Duration::from_secs(3),
        Assignor::CooperativeSticky,
    )
    .await;
    let runner = ProcessorRunner::builder(consumer, producer.clone(), recorder)
        .topics(&["moving"])
        .max_concurrency(4)
        .commit_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    tokio::spawn(async move { runner.run_until(stop.notified()).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_moving_to_a_new_member_are_handed_over_without_losing_records() {
    const KEYS: usize = 20;
    const RECORDS: usize = 400;
    let cluster = cluster(&[("moving", 4), ("moving.dlt", 1)]).await;
    let producer = runs::producer(&cluster.bootstrap_servers()).await;
    runs::write_keyed(&producer, "moving", KEYS, RECORDS).await;
    let mut first = Recorder::new(|_, _| Ok(()));
    first.max_sleep_ms = 8;
    let mut second = first.clone();
    second.calls = Arc::default();
    second.assigned = Arc::default();
    let (stop_first, stop_second) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let a = spawn_member(&cluster, &producer, first.clone(), Arc::clone(&stop_first)).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while first.calls().len() < 100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the first member processes records");
    let b = spawn_member(
        &cluster,
        &producer,
        second.clone(),
        Arc::clone(&stop_second),
    )
    .await;
    tokio::time::timeout(
        Duration::from_secs(20),
        runs::every_value_seen(first.clone(), second.clone(), RECORDS),
    )
    .await
    .expect("every record processed by one member or the other");
    stop_first.notify_one();
    stop_second.notify_one();
    a.await.unwrap().expect("the first member stops cleanly");
    b.await.unwrap().expect("the second member stops cleanly");

    let (one, two) = (first.calls(), second.calls());
    assert!(!two.is_empty(), "partitions moved to the second member");
    runs::assert_key_order(&one, "first member");
    runs::assert_key_order(&two, "second member");
    for p in 0..4 {
        assert_eq!(
            cluster.committed_offset("moving", "moving", p),
            Some(cluster.high_watermark("moving", p)),
            "partition {p} committed to its end"
        );
    }
}

/// A processor that spends 2 ms on every record.
struct TwoMillis;

impl smartkafka::processor::Processor for TwoMillis {
    async fn process(
        &self,
        _: &smartkafka::consumer::ConsumedRecord,
    ) -> Result<(), smartkafka::processor::ProcessError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_commits_its_processing_time_with_each_offset() {
    use smartkafka::health::{KafkaLagCollector, LagCollector, ProcessingReport};
    use smartkafka::{AdminClient, ClientConfig};

    let cluster = cluster(&[("work", 2), ("work.dlt", 1)]).await;
    let bootstrap = cluster.bootstrap_servers();
    let producer = runs::producer(&bootstrap).await;
    let records: Vec<(Option<String>, Vec<u8>)> = (0..40)
        .map(|i| (Some(format!("k{i}")), format!("job-{i}").into_bytes()))
        .collect();
    runs::write(&producer, "work", &records).await;
    let run = |group: &'static str, report: bool| {
        let (bootstrap, producer) = (bootstrap.clone(), producer.clone());
        async move {
            let consumer =
                runs::consumer(&bootstrap, group, Duration::from_secs(3), Assignor::Range).await;
            let runner = ProcessorRunner::builder(consumer, producer, TwoMillis)
                .topics(&["work"])
                .commit_interval(Duration::from_millis(100))
                .report_processing(report)
                .build()
                .unwrap();
            let stats = runner.stats();
            tokio::time::timeout(
                Duration::from_secs(20),
                runner.run_until(runs::until(stats, |s| s.processed == 40)),
            )
            .await
            .expect("the run ends")
            .expect("the run succeeds");
        }
    };
    run("reporting", true).await;
    run("quiet", false).await;

    let admin = AdminClient::connect(ClientConfig::new(&bootstrap))
        .await
        .unwrap();
    let reporting = admin
        .committed_with_metadata("reporting", "work", &[0, 1])
        .await
        .unwrap();
    for (p, committed) in &reporting {
        let committed = committed.as_ref().expect("committed");
        assert_eq!(committed.offset, cluster.high_watermark("work", *p));
        let report = committed
            .metadata
            .as_deref()
            .and_then(ProcessingReport::from_metadata)
            .unwrap_or_else(|| panic!("partition {p}: {committed:?}"));
        // At least the 2 ms slept; not much more on an idle machine.
        assert!(
            report.per_record() >= Duration::from_millis(2)
                && report.per_record() < Duration::from_millis(50),
            "partition {p}: {report:?}"
        );
        assert!(report.records() >= 1, "{report:?}");
    }
    // The lag collector reads the same reports.
    let lags = KafkaLagCollector::new(ClientConfig::new(&bootstrap))
        .collect("reporting", "work")
        .await
        .unwrap();
    assert!(lags.iter().all(|l| l.processing.is_some()), "{lags:?}");
    // Turned off: offsets without metadata.
    let quiet = admin
        .committed_with_metadata("quiet", "work", &[0, 1])
        .await
        .unwrap();
    for committed in quiet.values() {
        let committed = committed.as_ref().expect("committed");
        assert_eq!(committed.metadata, None, "{committed:?}");
    }
}
