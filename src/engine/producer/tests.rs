//! Deterministic simulation: a virtual clock and scripted responses.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};

use kafka_protocol::messages::{ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::*;
use crate::error::ErrorKind;
use crate::metadata::ClusterMetadata;
use crate::protocol::KafkaCode;

use crate::engine::fixtures::config;

/// Topic `t` on brokers 1 and 2, with (partition, leader, leader epoch).
fn cluster(leaders: &[(i32, Option<i32>, i32)]) -> ClusterMetadata {
    crate::engine::fixtures::metadata("h", &[1, 2], Some(leaders))
}

/// Starts an engine whose first metadata answer is `metadata`.
fn engine(config: EngineConfig, t0: Instant, metadata: &ClusterMetadata) -> Engine {
    let mut e = Engine::new(config);
    e.handle_timeout(t0);
    e.append(t0, 0, Record::new("t").partition(0).value("x"), 1, Some(t0));
    let mut ids = vec![];
    while let Some(t) = e.poll_transmit() {
        if let Transmit::Metadata { id, .. } = t {
            ids.push(id);
        }
    }
    for id in ids {
        e.handle_metadata_response(t0, id, Ok(metadata.clone()));
    }
    // Drop the probe record's outcome.
    while e.poll_event().is_some() {}
    while e.poll_transmit().is_some() {}
    e.abort(t0, &Error::new(ErrorKind::Closed, "reset"));
    while e.poll_event().is_some() {}
    e
}

/// A Produce transmit: request id, broker, and (partition, batch bytes).
type Sent = (u64, i32, Vec<(i32, usize)>);

fn produce_transmits(e: &mut Engine) -> Vec<Sent> {
    let mut out = vec![];
    while let Some(t) = e.poll_transmit() {
        if let Transmit::Produce {
            id, node, request, ..
        } = t
        {
            let parts = request
                .topic_data
                .iter()
                .flat_map(|t| t.partition_data.iter())
                .map(|p| (p.index, p.records.as_ref().map_or(0, |r| r.len())))
                .collect();
            out.push((id, node, parts));
        }
    }
    out
}

fn answer(partitions: &[(i32, i16, i64)]) -> ProduceResponse {
    ProduceResponse::default().with_responses(vec![
        TopicProduceResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_responses(
                partitions
                    .iter()
                    .map(|(p, code, base)| {
                        PartitionProduceResponse::default()
                            .with_index(*p)
                            .with_error_code(*code)
                            .with_base_offset(*base)
                            .with_log_append_time_ms(-1)
                    })
                    .collect(),
            ),
    ])
}

fn events(e: &mut Engine) -> Vec<Event> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

#[test]
fn a_batch_waits_for_linger_then_goes_to_its_leader() {
    let t0 = Instant::now_for_tests();
    let mut e = engine(config(), t0, &cluster(&[(0, Some(2), 0), (1, Some(1), 0)]));
    e.append(
        t0,
        0,
        Record::new("t").partition(0).value("a"),
        10,
        Some(t0),
    );
    assert!(produce_transmits(&mut e).is_empty());
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_millis(5)));
    e.handle_timeout(t0 + Duration::from_millis(5));
    let sent = produce_transmits(&mut e);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, 2, "partition 0's leader");
    let t1 = t0 + Duration::from_millis(6);
    e.handle_produce_response(t1, sent[0].0, Ok(answer(&[(0, 0, 41)])));
    let ev = events(&mut e);
    assert!(
        matches!(&ev[..], [Event::Accepted { token: 10 }, Event::Delivered(b)]
            if b.records.len() == 1 && b.records[0].token == 10 && b.metadata(0).offset == 41)
    );
    assert!(e.is_idle());
}

/// A record appended as of the instant it was sent (the producer's task
/// took it later) lingers from then; an instant before the engine's last
/// input counts as that input's, so its time never goes back.
#[test]
fn a_record_lingers_from_the_instant_it_is_appended_as_of_never_before_the_last_input() {
    let t0 = Instant::now_for_tests();
    let ms = Duration::from_millis;
    let mut e = engine(config(), t0, &cluster(&[(0, Some(2), 0), (1, Some(1), 0)]));
    e.handle_timeout(t0 + ms(3));
    // Sent at 4 ms, taken at 6: lingers from 4.
    e.append_deferred(
        t0 + ms(4),
        0,
        &Record::new("t").partition(0).value("a"),
        10,
        None,
        false,
    );
    e.handle_timeout(t0 + ms(6));
    assert_eq!(e.poll_timeout(), Some(t0 + ms(9)));
    // Sent at 2 ms, before the input at 6: lingers from 6.
    e.append_deferred(
        t0 + ms(2),
        0,
        &Record::new("t").partition(1).value("b"),
        11,
        None,
        false,
    );
    e.handle_timeout(t0 + ms(8));
    assert!(produce_transmits(&mut e).is_empty());
    e.handle_timeout(t0 + ms(9));
    let sent = produce_transmits(&mut e);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2[0].0, 0, "partition 0 first");
    assert_eq!(e.poll_timeout(), Some(t0 + ms(11)));
    e.handle_timeout(t0 + ms(11));
    let sent = produce_transmits(&mut e);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2[0].0, 1);
}

/// A request that goes to a broker for a partition whose linger ended
/// takes what the broker's other partitions hold too, lingering or not; a
/// partition led by another broker keeps its linger.
#[test]
fn a_ready_partition_takes_its_brokers_other_partitions_along() {
    let t0 = Instant::now_for_tests();
    let ms = Duration::from_millis;
    let mut e = engine(
        config(),
        t0,
        &cluster(&[(0, Some(1), 0), (1, Some(1), 0), (2, Some(2), 0)]),
    );
    let mut append = |at: Instant, partition: i32, token: u64| {
        let record = Record::new("t").partition(partition).value("v");
        e.append(at, 0, record, token, Some(at));
    };
    append(t0, 0, 10);
    append(t0 + ms(1), 2, 11);
    append(t0 + ms(3), 1, 12);
    e.handle_timeout(t0 + ms(4));
    assert!(
        produce_transmits(&mut e).is_empty(),
        "nothing lingered 5 ms"
    );
    e.handle_timeout(t0 + ms(5));
    let sent = produce_transmits(&mut e);
    assert_eq!(sent.len(), 1, "one request: {sent:?}");
    let (_, node, parts) = &sent[0];
    assert_eq!(*node, 1);
    let partitions: Vec<i32> = parts.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        partitions,
        [0, 1],
        "partition 1 joins partition 0's request"
    );
    assert_eq!(
        e.poll_timeout(),
        Some(t0 + ms(6)),
        "partition 2 still lingers"
    );
    e.handle_timeout(t0 + ms(6));
    let sent = produce_transmits(&mut e);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].1, sent[0].2[0].0), (2, 2));
}

/// A linger ending within a tenth of the linger after a pass goes with it
/// (one wake-up, not two a moment apart); a retry's backoff is never
/// shortened.
#[test]
fn a_linger_about_to_end_goes_with_the_pass_but_a_backoff_is_waited_out() {
    let t0 = Instant::now_for_tests();
    let us = Duration::from_micros;
    let mut e = engine(config(), t0, &cluster(&[(0, Some(1), 0), (1, Some(2), 0)]));
    e.append(
        t0,
        0,
        Record::new("t").partition(0).value("a"),
        10,
        Some(t0),
    );
    let t1 = t0 + us(400);
    e.append(
        t1,
        0,
        Record::new("t").partition(1).value("b"),
        11,
        Some(t1),
    );
    e.handle_timeout(t0 + us(5_000));
    let sent = produce_transmits(&mut e);
    let nodes: Vec<i32> = sent.iter().map(|s| s.1).collect();
    assert_eq!(
        nodes,
        [1, 2],
        "partition 1, 0.4 ms short of its linger, went too"
    );

    // Partition 0's batch is refused with a retriable error: it waits out
    // its whole backoff.
    let t2 = t0 + us(6_000);
    e.handle_produce_response(
        t2,
        sent[0].0,
        Ok(answer(&[(0, KafkaCode::NOT_ENOUGH_REPLICAS.code(), -1)])),
    );
    let retry_at = e.poll_timeout().expect("a retry is planned");
    assert!(retry_at > t2);
    e.handle_timeout(retry_at - us(200));
    assert!(
        produce_transmits(&mut e).is_empty(),
        "retried before its backoff ended"
    );
    e.handle_timeout(retry_at);
    let sent = produce_transmits(&mut e);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].1, sent[0].2[0].0), (1, 0));
}

/// Fault scenario 3 (KIP-951): a NOT_LEADER_OR_FOLLOWER answer that
/// names the new leader, with a newer epoch and its endpoint, moves the
/// batch there at once: no metadata round trip, no backoff.
#[test]
fn fault_03_leader_hint_moves_the_batch_without_a_metadata_round_trip() {
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::messages::produce_response::{LeaderIdAndEpoch, NodeEndpoint};
    let t0 = Instant::now_for_tests();
    let mut e = engine(config(), t0, &cluster(&[(0, Some(1), 4)]));
    e.append(
        t0,
        0,
        Record::new("t").partition(0).value("a"),
        10,
        Some(t0),
    );
    e.flush(t0, 10);
    let sent = produce_transmits(&mut e);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, 1);
    let mut response = answer(&[(0, KafkaCode::NOT_LEADER_OR_FOLLOWER.code(), -1)]);
    response.responses[0].partition_responses[0].current_leader = LeaderIdAndEpoch::default()
        .with_leader_id(BrokerId(3))
        .with_leader_epoch(5);
    response.node_endpoints = vec![
        NodeEndpoint::default()
            .with_node_id(BrokerId(3))
            .with_host(StrBytes::from_static_str("h3"))
            .with_port(9003),
    ];
    let t1 = t0 + Duration::from_millis(1);
    e.handle_produce_response(t1, sent[0].0, Ok(response));
    let mut produce = vec![];
    while let Some(t) = e.poll_transmit() {
        match t {
            Transmit::Metadata { .. } => panic!("the hint made a metadata refresh needless"),
            Transmit::Produce { node, addr, .. } => produce.push((node, addr)),
            Transmit::InitProducerId { .. } | Transmit::Txn { .. } => panic!("not idempotent"),
        }
    }
    assert_eq!(
        produce,
        vec![(3, "h3:9003".to_string())],
        "resent at once to the hinted leader"
    );
    assert_eq!(e.stats(false).leader_hints, 1);
    assert_eq!(e.stats(false).retries, 1);
}

/// A hint with an epoch no newer than the known one is ignored: epochs
/// never go backwards, so the engine refreshes metadata instead.
#[test]
fn a_stale_leader_hint_is_ignored_and_metadata_is_refreshed() {
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::messages::produce_response::LeaderIdAndEpoch;
    let t0 = Instant::now_for_tests();
    let mut e = engine(config(), t0, &cluster(&[(0, Some(1), 4)]));
    e.append(
        t0,
        0,
        Record::new("t").partition(0).value("a"),
        10,
        Some(t0),
    );
    e.flush(t0, 10);
    let sent = produce_transmits(&mut e);
    let mut response = answer(&[(0, KafkaCode::NOT_LEADER_OR_FOLLOWER.code(), -1)]);
    response.responses[0].partition_responses[0].current_leader = LeaderIdAndEpoch::default()
        .with_leader_id(BrokerId(2))
        .with_leader_epoch(4);
    e.handle_produce_response(t0 + Duration::from_millis(1), sent[0].0, Ok(response));
    let transmits: Vec<Transmit> = std::iter::from_fn(|| e.poll_transmit()).collect();
    assert!(
        transmits
            .iter()
            .any(|t| matches!(t, Transmit::Metadata { .. })),
        "{transmits:?}"
    );
    assert!(
        !transmits
            .iter()
            .any(|t| matches!(t, Transmit::Produce { .. })),
        "no resend before the leader is known again"
    );
    assert_eq!(e.stats(false).leader_hints, 0);
}

/// The engine keeps a record's timestamp as an `i32` delta from its
/// batch's base: records weeks apart go to batches of their own, and
/// every delivery reports the record's exact timestamp.
#[test]
fn timestamps_weeks_apart_take_separate_batches_and_are_reported_exactly() {
    let t0 = Instant::now_for_tests();
    let mut e = engine(config(), t0, &cluster(&[(0, Some(1), 0)]));
    let rec = |ts: i64| Record::new("t").partition(0).value("v").timestamp(ts);
    let base = 1_700_000_000_000i64;
    let forty_days = 40 * 24 * 3600 * 1000i64;
    let stamps = [base, base + forty_days, base + 1, base - 5];
    for (i, ts) in stamps.iter().enumerate() {
        e.append(t0, 0, rec(*ts), 10 + i as u64, Some(t0));
    }
    e.flush(t0, 13);
    let mut reported = BTreeMap::new();
    let mut batches = 0;
    let mut t = t0;
    for _ in 0..10 {
        let sent = produce_transmits(&mut e);
        if sent.is_empty() {
            break;
        }
        for (id, _, _) in sent {
            t += Duration::from_millis(1);
            batches += 1;
            e.handle_produce_response(t, id, Ok(answer(&[(0, 0, batches * 10)])));
        }
        for ev in events(&mut e) {
            if let Event::Delivered(b) = ev {
                for r in b.records.iter() {
                    reported.insert(r.token, b.timestamp(r));
                }
            }
        }
    }
    let expected: BTreeMap<u64, i64> = stamps
        .iter()
        .enumerate()
        .map(|(i, ts)| (10 + i as u64, *ts))
        .collect();
    assert_eq!(reported, expected);
    // base | base+40d | base+1, base-5 (both within range of base+1).
    assert_eq!(batches, 3);
}

/// A timestamp too far from the open batch's first for a delta starts
/// a batch of its own instead of failing.
#[test]
fn an_extreme_timestamp_starts_its_own_batch() {
    let t0 = Instant::now_for_tests();
    let mut e = engine(config(), t0, &cluster(&[(0, Some(1), 0)]));
    let rec = |ts: i64| Record::new("t").partition(0).value("v").timestamp(ts);
    e.append(t0, 0, rec(1_700_000_000_000), 10, Some(t0));
    e.append(t0, 0, rec(i64::MIN), 11, Some(t0));
    e.flush(t0, 11);
    let mut batches = 0;
    while let Some(t) = e.poll_transmit() {
        if let Transmit::Produce { request, .. } = t {
            batches += request.topic_data[0].partition_data.len();
        }
    }
    let ev = events(&mut e);
    assert!(
        !ev.iter().any(|e| matches!(e, Event::Failed { .. })),
        "{ev:?}"
    );
    assert!(batches >= 1);
    // Both records were accepted into batches of their own.
    let accepted = ev
        .iter()
        .filter(|e| matches!(e, Event::Accepted { .. }))
        .count();
    assert_eq!(accepted, 2);
    assert_eq!(e.stats(false).queued_records, 2);
}

#[test]
fn one_batch_in_flight_per_partition_and_retries_keep_order() {
    let t0 = Instant::now_for_tests();
    let mut cfg = config();
    cfg.batch_size = 200;
    let mut e = engine(cfg, t0, &cluster(&[(0, Some(1), 0)]));
    for token in 10..20 {
        e.append(
            t0,
            0,
            Record::new("t").partition(0).value(vec![b'v'; 60]),
            token,
            Some(t0),
        );
    }
    e.flush(t0, 19);
    let first = produce_transmits(&mut e);
    assert_eq!(
        first.len(),
        1,
        "muted: only one batch of the partition in flight"
    );
    // NOT_LEADER: retried after a backoff, before anything queued behind it.
    let t1 = t0 + Duration::from_millis(1);
    e.handle_produce_response(t1, first[0].0, Ok(answer(&[(0, 6, -1)])));
    // A metadata refresh was asked for; answer with a new leader (epoch up).
    let t2 = t1 + Duration::from_millis(200);
    e.handle_timeout(t2);
    let mut meta_ids = vec![];
    let mut produced = vec![];
    while let Some(t) = e.poll_transmit() {
        match t {
            Transmit::Metadata { id, .. } => meta_ids.push(id),
            Transmit::Produce { .. } => produced.push(t),
            Transmit::InitProducerId { .. } | Transmit::Txn { .. } => panic!("not idempotent"),
        }
    }
    assert_eq!(meta_ids.len(), 1);
    assert!(produced.is_empty(), "no leader known until the refresh");
    e.handle_metadata_response(t2, meta_ids[0], Ok(cluster(&[(0, Some(2), 1)])));
    let retry = produce_transmits(&mut e);
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].1, 2);
    assert_eq!(retry[0].2, first[0].2, "the same batch, resent");
    let stale = cluster(&[(0, Some(1), 0)]);
    // An older epoch does not move the leader back.
    e.metadata.apply(t2, &stale);
    assert_eq!(e.metadata.topic("t").unwrap().leader(0), Some(2));
    let mut delivered = vec![];
    let mut t = t2;
    let mut pending = retry;
    let mut base = 0;
    while let Some((id, _, parts)) = pending.pop() {
        t += Duration::from_millis(1);
        e.handle_produce_response(t, id, Ok(answer(&[(0, 0, base)])));
        base += 100;
        let _ = parts;
        for ev in events(&mut e) {
            if let Event::Delivered(b) = ev {
                delivered.extend(b.records.iter().map(|r| r.token));
            }
        }
        pending = produce_transmits(&mut e);
        assert!(pending.len() <= 1);
    }
    assert_eq!(delivered, (10..20).collect::<Vec<_>>());
}

#[test]
fn unsent_batches_expire_not_persisted_and_in_flight_ones_possibly() {
    let t0 = Instant::now_for_tests();
    let mut e = engine(config(), t0, &cluster(&[(0, Some(1), 0), (1, None, 0)]));
    e.append(
        t0,
        0,
        Record::new("t").partition(0).value("sent"),
        10,
        Some(t0),
    );
    e.append(
        t0,
        0,
        Record::new("t").partition(1).value("stuck"),
        11,
        Some(t0),
    );
    e.flush(t0, 11);
    let sent = produce_transmits(&mut e);
    assert_eq!(sent.len(), 1);
    let _ = events(&mut e);
    e.handle_timeout(t0 + Duration::from_secs(2));
    let failed: BTreeMap<u64, bool> = events(&mut e)
        .into_iter()
        .filter_map(|ev| match ev {
            Event::Failed { token, error, .. } => {
                assert_eq!(error.kind(), &ErrorKind::DeliveryTimeout);
                Some((token, error.possibly_persisted()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(failed, BTreeMap::from([(10, true), (11, false)]));
    // A late success does not resurrect the batch.
    e.handle_produce_response(
        t0 + Duration::from_secs(3),
        sent[0].0,
        Ok(answer(&[(0, 0, 5)])),
    );
    assert!(events(&mut e).is_empty());
    assert_eq!(e.stats(true).queued_bytes, 0);
}

/// Each partition's counters follow its own batches through a retry, a
/// delivery and an expiry, and add up to the totals.
#[test]
fn a_partitions_counters_follow_its_batches() {
    let t0 = Instant::now_for_tests();
    let mut e = engine(config(), t0, &cluster(&[(0, Some(1), 0), (1, None, 0)]));
    // The setup's probe record failed before it reached a partition: the
    // totals count it, no partition does.
    let before = e.stats(false);
    for token in 10..13 {
        e.append(
            t0,
            0,
            Record::new("t").partition(0).value("sent"),
            token,
            Some(t0),
        );
    }
    e.append(
        t0,
        0,
        Record::new("t").partition(1).value("stuck"),
        13,
        Some(t0),
    );
    e.flush(t0, 13);
    let first = produce_transmits(&mut e);
    assert_eq!(first.len(), 1);
    // NOT_ENOUGH_REPLICAS: retried after a backoff, no metadata needed.
    let t1 = t0 + Duration::from_millis(1);
    e.handle_produce_response(t1, first[0].0, Ok(answer(&[(0, 19, -1)])));
    let stats = e.stats(true);
    let p0 = stats.partition("t", 0).unwrap();
    assert_eq!((p0.retries, p0.records_sent, p0.batches_sent), (1, 0, 0));
    let t2 = t1 + Duration::from_millis(500);
    e.handle_timeout(t2);
    let retry = produce_transmits(&mut e);
    assert_eq!(retry.len(), 1, "resent after the backoff");
    e.handle_produce_response(t2, retry[0].0, Ok(answer(&[(0, 0, 40)])));
    // Partition 1 has no leader: its record expires.
    e.handle_timeout(t0 + Duration::from_secs(3));
    let outcomes = events(&mut e);
    assert!(
        outcomes
            .iter()
            .any(|ev| matches!(ev, Event::Delivered(b) if b.records.len() == 3))
    );
    assert!(
        outcomes
            .iter()
            .any(|ev| matches!(ev, Event::Failed { token: 13, .. }))
    );
    let stats = e.stats(true);
    let p0 = stats.partition("t", 0).unwrap();
    assert_eq!(
        (p0.records_sent, p0.batches_sent, p0.retries, p0.errors),
        (3, 1, 1, 0)
    );
    assert_eq!(p0.bytes_sent, retry[0].2[0].1 as u64, "the batch as sent");
    let p1 = stats.partition("t", 1).unwrap();
    assert_eq!(
        (p1.records_sent, p1.batches_sent, p1.retries, p1.errors),
        (0, 0, 0, 1)
    );
    assert_eq!((p0.queued_bytes, p1.queued_bytes), (0, 0), "nothing held");
    assert_eq!(
        (
            stats.records_sent - before.records_sent,
            stats.retries - before.retries,
            stats.errors - before.errors,
            stats.bytes_sent - before.bytes_sent,
        ),
        (3, 1, 1, p0.bytes_sent)
    );
}

#[test]
fn the_drain_rotates_its_starting_partition() {
    let t0 = Instant::now_for_tests();
    let mut cfg = config();
    cfg.max_request_size = 200; // one batch per request
    cfg.max_in_flight = 1;
    cfg.batch_size = 100; // one record per batch
    let leaders: Vec<(i32, Option<i32>, i32)> = (0..4).map(|p| (p, Some(1), 0)).collect();
    let mut e = engine(cfg, t0, &cluster(&leaders));
    let mut token = 10;
    for _ in 0..3 {
        for p in 0..4 {
            let r = Record::new("t").partition(p).value(vec![b'v'; 60]);
            e.append(t0, 0, r, token, Some(t0));
            token += 1;
        }
    }
    e.flush(t0, token);
    let mut firsts = vec![];
    let mut t = t0;
    loop {
        let sent = produce_transmits(&mut e);
        if sent.is_empty() {
            break;
        }
        assert_eq!(sent.len(), 1, "max_in_flight 1");
        let (id, _, parts) = &sent[0];
        assert_eq!(parts.len(), 1, "one batch fits a request");
        firsts.push(parts[0].0);
        t += Duration::from_millis(1);
        e.handle_produce_response(t, *id, Ok(answer(&[(parts[0].0, 0, 0)])));
    }
    // Every partition gets its turn: 0, 1, 2, 3, 0, 1, ...
    let expected: Vec<i32> = (0..12).map(|i| i % 4).collect();
    assert_eq!(firsts, expected);
}

#[test]
fn buffer_waiters_are_served_in_order_and_fail_at_their_deadline() {
    let t0 = Instant::now_for_tests();
    let mut cfg = config();
    cfg.buffer_memory = 300;
    cfg.batch_size = 100;
    let mut e = engine(cfg, t0, &cluster(&[(0, Some(1), 0)]));
    let deadline = t0 + Duration::from_millis(50);
    for token in 10..16 {
        e.append(
            t0,
            0,
            Record::new("t").partition(0).value(vec![b'v'; 70]),
            token,
            Some(deadline),
        );
    }
    let accepted: Vec<u64> = events(&mut e)
        .into_iter()
        .filter_map(|ev| match ev {
            Event::Accepted { token } => Some(token),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, vec![10, 11, 12]);
    e.handle_timeout(deadline);
    let failed: Vec<(u64, ErrorKind)> = events(&mut e)
        .into_iter()
        .filter_map(|ev| match ev {
            Event::Failed { token, error, .. } => Some((token, error.kind().clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        vec![
            (13, ErrorKind::BufferExhausted),
            (14, ErrorKind::BufferExhausted),
            (15, ErrorKind::BufferExhausted)
        ]
    );
}

/// A record appended without a deadline (`try_send`) before its
/// topic's metadata is known waits for it rather than failing, and is
/// taken when the metadata arrives; one whose topic never appears
/// fails at `max_block`, naming the topic.
#[test]
fn a_record_without_deadline_waits_for_metadata_up_to_max_block() {
    let t0 = Instant::now_for_tests();
    let mut cfg = config();
    cfg.max_block = Duration::from_millis(500);
    let mut e = Engine::new(cfg);
    e.handle_timeout(t0);
    e.append(t0, 0, Record::new("t").partition(0).value("a"), 10, None);
    e.append(t0, 0, Record::new("gone").value("b"), 11, None);
    assert!(
        events(&mut e).is_empty(),
        "nothing fails while metadata is on its way"
    );
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_millis(500)));
    let ids: Vec<u64> = std::iter::from_fn(|| e.poll_transmit())
        .filter_map(|t| match t {
            Transmit::Metadata { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    assert!(!ids.is_empty());
    let t1 = t0 + Duration::from_millis(100);
    for id in ids {
        e.handle_metadata_response(t1, id, Ok(cluster(&[(0, Some(1), 0)])));
    }
    let ev = events(&mut e);
    assert!(
        matches!(&ev[..], [Event::Accepted { token: 10 }]),
        "{} events",
        ev.len()
    );
    e.handle_timeout(t0 + Duration::from_millis(500));
    let failed: Vec<(u64, ErrorKind, String)> = events(&mut e)
        .into_iter()
        .filter_map(|ev| match ev {
            Event::Failed { token, error, .. } => {
                Some((token, error.kind().clone(), error.to_string()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 11);
    assert_eq!(failed[0].1, ErrorKind::Timeout);
    assert!(failed[0].2.contains("`gone`"), "{}", failed[0].2);
}

trait TestClock {
    fn now_for_tests() -> Instant;
}

impl TestClock for Instant {
    /// Tests need some starting instant; only its differences matter.
    #[allow(clippy::disallowed_methods)]
    fn now_for_tests() -> Instant {
        Instant::now()
    }
}

/// An acknowledged batch's buffer is kept for the next batch, and given
/// back once no batch needed it for a whole trim interval: the engine asks
/// to be woken for that, so an idle producer lets go of it by time alone.
#[test]
fn spare_batch_buffers_are_reused_then_given_back_when_idle() {
    use crate::record_batch::TRIM_EVERY;
    let t0 = Instant::now_for_tests();
    let mut cfg = config();
    cfg.batch_size = 4096;
    let mut e = engine(cfg, t0, &cluster(&[(0, Some(1), 0)]));
    let mut now = t0;
    for token in [10, 11] {
        e.append(
            now,
            0,
            // A batch's worth: small batches start in small buffers,
            // which the pool does not keep.
            Record::new("t").partition(0).value(vec![b'a'; 4000]),
            token,
            Some(now),
        );
        now += Duration::from_millis(5);
        e.handle_timeout(now);
        let sent = produce_transmits(&mut e);
        assert_eq!(sent.len(), 1);
        e.handle_produce_response(now, sent[0].0, Ok(answer(&[(0, 0, token as i64)])));
        assert!(
            events(&mut e)
                .iter()
                .any(|ev| matches!(ev, Event::Delivered(_)))
        );
        // The second batch took the first one's buffer: still one held.
        assert_eq!(e.spare_buffers.len(), 1, "after record {token}");
    }
    assert!(e.is_idle());
    let delivered_at = now;
    while !e.spare_buffers.is_empty() {
        let wake = e
            .poll_timeout()
            .expect("a wake-up to trim the spare buffers");
        assert!(
            wake <= delivered_at + 2 * TRIM_EVERY + Duration::from_millis(1),
            "woken at {:?}",
            wake - delivered_at
        );
        e.handle_timeout(wake);
    }
}

/// Records what the view says of partitions 0, 1 and 2's leaders, and
/// places every keyless record on partition 0.
struct LatencyProbe(std::sync::Arc<std::sync::Mutex<Vec<[Option<Duration>; 3]>>>);

impl Partitioner for LatencyProbe {
    fn partition(
        &mut self,
        _key: Option<&[u8]>,
        _value: Option<&[u8]>,
        view: &crate::engine::partitioner::PartitionView<'_>,
    ) -> Result<i32, crate::engine::partitioner::PartitionError> {
        self.0
            .lock()
            .unwrap()
            .push([0, 1, 2].map(|p| view.leader_latency(p)));
        Ok(0)
    }
}

#[test]
fn the_partitioner_sees_each_leaders_produce_latency() {
    use crate::engine::partitioner::PartitionerRecipe;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let probe = std::sync::Arc::clone(&seen);
    let config = EngineConfig {
        partitioner: PartitionerRecipe::new(
            "Probe",
            std::sync::Arc::new(move |_| Box::new(LatencyProbe(std::sync::Arc::clone(&probe)))),
        ),
        ..config()
    };
    let t0 = Instant::now_for_tests();
    // Partitions 0 and 2 on broker 2, partition 1 on broker 1.
    let leaders = cluster(&[(0, Some(2), 0), (1, Some(1), 0), (2, Some(2), 0)]);
    let mut e = engine(config, t0, &leaders);
    let ms = Duration::from_millis;
    e.append(t0, 0, Record::new("t").value("a"), 10, Some(t0));
    e.append(
        t0,
        0,
        Record::new("t").partition(1).value("b"),
        11,
        Some(t0),
    );
    e.handle_timeout(t0 + ms(5));
    let sent = produce_transmits(&mut e);
    assert_eq!(sent.len(), 2, "one request per broker: {sent:?}");
    let mut sent = sent;
    sent.sort_by_key(|(_, node, _)| std::cmp::Reverse(*node));
    for (id, node, _) in &sent {
        // Broker 2 answers after 45 ms, then broker 1 after 51 ms.
        let (after, partition) = if *node == 2 { (50, 0) } else { (56, 1) };
        e.handle_produce_response(t0 + ms(after), *id, Ok(answer(&[(partition, 0, 0)])));
    }
    e.append(t0 + ms(60), 0, Record::new("t").value("c"), 12, Some(t0));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![[None; 3], [Some(ms(45)), Some(ms(51)), Some(ms(45))]],
        "not known before an answer; then each leader's own figure, also \
         for partition 2, which sent nothing"
    );
}

/// A record that waited for buffer space when `flush` was called is
/// flushed too: once a delivery makes room it goes at once, without
/// waiting out its linger (the pass that takes it follows a delivered
/// batch, and looks only at the partitions that may send).
#[test]
fn a_record_waiting_for_room_at_a_flush_goes_once_taken() {
    let t0 = Instant::now_for_tests();
    let mut cfg = config();
    cfg.buffer_memory = 300;
    cfg.batch_size = 100;
    cfg.linger = Duration::from_secs(1);
    let mut e = engine(cfg, t0, &cluster(&[(0, Some(1), 0), (1, Some(1), 0)]));
    for token in 10..14 {
        e.append(
            t0,
            0,
            Record::new("t")
                .partition(if token < 13 { 0 } else { 1 })
                .value(vec![b'v'; 70]),
            token,
            None,
        );
    }
    let accepted = |e: &mut Engine| -> Vec<u64> {
        events(e)
            .into_iter()
            .filter_map(|ev| match ev {
                Event::Accepted { token } => Some(token),
                _ => None,
            })
            .collect()
    };
    assert_eq!(accepted(&mut e), vec![10, 11, 12], "13 waits for room");
    e.flush(t0, 13);
    let sent = produce_transmits(&mut e);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].2.iter().all(|(p, _)| *p == 0));
    // The first batch is delivered: room for 13, which the flush covers.
    let t1 = t0 + Duration::from_millis(2);
    e.handle_produce_response(t1, sent[0].0, Ok(answer(&[(0, 0, 0)])));
    assert_eq!(accepted(&mut e), vec![13]);
    let sent = produce_transmits(&mut e);
    assert!(
        sent.iter()
            .any(|(_, _, parts)| parts.iter().any(|(p, _)| *p == 1)),
        "13 went out at once: {sent:?}"
    );
}
