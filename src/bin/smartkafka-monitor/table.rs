//! The live table on stdout: one row per partition (group, topic,
//! partition, lag, committed and end offsets, score, healthy, trend status,
//! processing rate, the capacity its consumer reported, lag slope, the
//! trend routing's reason and share, and why it is excluded), redrawn in
//! place with colours when stdout is a terminal, and written as plain lines
//! (one block per refresh, for logs) otherwise.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use smartkafka::health::{HealthSummary, PartitionScore};

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
/// Cursor home, then clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Writes the table to stdout.
pub struct Table {
    terminal: bool,
}

impl Table {
    /// A table for this process's stdout: coloured and redrawn in place on
    /// a terminal, plain lines otherwise.
    pub fn for_stdout() -> Table {
        Table {
            terminal: std::io::stdout().is_terminal(),
        }
    }

    /// Writes the current state of every group; a closed stdout is ignored.
    pub fn print(&self, summaries: &[HealthSummary]) {
        let text = if self.terminal {
            render_terminal(summaries)
        } else {
            render_plain(summaries)
        };
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// The records per second the partition's consumer reported it can
/// process, `-` without a report.
fn capacity(p: &PartitionScore) -> String {
    p.lag
        .processing
        .map_or_else(|| "-".to_owned(), |r| format!("{:.0}", r.capacity()))
}

/// One line per partition: `group=.. topic=.. partition=.. lag=..`, after
/// one line per topic.
pub fn render_plain(summaries: &[HealthSummary]) -> String {
    let mut out = String::new();
    for summary in summaries {
        for topic in &summary.topics {
            let _ = writeln!(
                out,
                "group={} topic={} total_lag={} healthy={:?} unhealthy={:?} stale={} refreshes={} failed_collections={}",
                summary.group,
                topic.topic,
                topic
                    .total_lag
                    .map_or_else(|| "-".to_owned(), |l| l.to_string()),
                topic.healthy,
                topic.unhealthy,
                topic.stale,
                summary.refreshes,
                summary.failed_collections,
            );
            let Some(snapshot) = &topic.snapshot else {
                continue;
            };
            for p in snapshot.partitions() {
                let _ = writeln!(
                    out,
                    "group={} topic={} partition={} lag={} committed={} end={} score={:.2} healthy={} status={} reported_capacity={} routing={} weight={} excluded={}",
                    summary.group,
                    topic.topic,
                    p.partition(),
                    p.lag.lag,
                    p.lag
                        .committed
                        .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                    p.lag.end,
                    p.score,
                    p.healthy,
                    p.status().map_or("-", |s| s.name()),
                    capacity(p),
                    p.routing().map_or("-", |r| r.reason.name()),
                    p.routing()
                        .map_or_else(|| "-".to_owned(), |r| format!("{:.3}", r.weight)),
                    p.exclusion().map_or("-", |e| e.name()),
                );
            }
        }
    }
    out
}

/// The whole screen: a heading per group and topic, a row per partition,
/// green for healthy, red for unhealthy, yellow for stale data.
pub fn render_terminal(summaries: &[HealthSummary]) -> String {
    let mut out = String::from(CLEAR);
    for summary in summaries {
        let _ = writeln!(
            out,
            "{BOLD}group {}{RESET}  refreshes {}  failed collections {}{}",
            summary.group,
            summary.refreshes,
            summary.failed_collections,
            if summary.routing.cache_unavailable {
                format!("  {RED}redis unavailable{RESET}")
            } else {
                String::new()
            },
        );
        let _ = writeln!(
            out,
            "{BOLD}{:<24} {:>9} {:>12} {:>14} {:>14} {:>6}  {:<8} {:<12} {:>10} {:>10} {:>10}  {:<9} {:>6}  {:<12}{RESET}",
            "topic",
            "partition",
            "lag",
            "committed",
            "end",
            "score",
            "healthy",
            "status",
            "rate/s",
            "capacity/s",
            "slope/s",
            "routing",
            "share",
            "excluded"
        );
        for topic in &summary.topics {
            let Some(snapshot) = &topic.snapshot else {
                let _ = writeln!(out, "{YELLOW}{:<24} waiting for data{RESET}", topic.topic);
                continue;
            };
            for p in snapshot.partitions() {
                let (colour, word) = match (topic.stale, p.healthy) {
                    (true, _) => (YELLOW, "stale"),
                    (false, true) => (GREEN, "yes"),
                    (false, false) => (RED, "no"),
                };
                let _ = writeln!(
                    out,
                    "{colour}{:<24} {:>9} {:>12} {:>14} {:>14} {:>6.2}  {:<8} {:<12} {:>10} {:>10} {:>10}  {:<9} {:>6}  {:<12}{RESET}",
                    topic.topic,
                    p.partition(),
                    p.lag.lag,
                    p.lag
                        .committed
                        .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                    p.lag.end,
                    p.score,
                    word,
                    p.status().map_or("-", |s| s.name()),
                    p.trend
                        .and_then(|t| t.processing_rate)
                        .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}")),
                    capacity(p),
                    p.trend
                        .map_or_else(|| "-".to_owned(), |t| format!("{:+.0}", t.slope)),
                    p.routing().map_or("-", |r| r.reason.name()),
                    p.routing()
                        .map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r.weight * 100.0)),
                    p.exclusion().map_or("", |e| e.name()),
                );
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use smartkafka::health::{
        HealthManager, HealthTable, LagCollector, LagFuture, PartitionLag, ProcessingReport,
        RoutingCounters, SmartConfig,
    };

    use super::*;

    /// On `orders`, partition 0 keeps up (committed 90 of 100, its
    /// consumer reporting 2 ms a record) and partition 1 has no commit;
    /// collecting any other topic fails.
    struct Fixed;

    impl LagCollector for Fixed {
        fn collect<'a>(&'a self, _group: &'a str, topic: &'a str) -> LagFuture<'a> {
            Box::pin(async move {
                if topic != "orders" {
                    return Err(smartkafka::Error::config("topic", "not collected here"));
                }
                Ok(vec![
                    PartitionLag::new(0, Some(90), 100, Default::default()).with_processing(Some(
                        ProcessingReport::new(Duration::from_millis(2), 100),
                    )),
                    PartitionLag::new(1, None, 5_000, Default::default()),
                ])
            })
        }
    }

    async fn summaries() -> Vec<HealthSummary> {
        let manager = HealthManager::start_with(
            SmartConfig::new("readers").topics(["orders", "unseen"]),
            Arc::new(Fixed),
            HealthTable::new(),
            RoutingCounters::new(),
        )
        .unwrap();
        manager.refresh().await;
        manager.stop();
        vec![manager.summary()]
    }

    #[tokio::test]
    async fn plain_lines_carry_every_partition_and_no_colour() {
        let text = render_plain(&summaries().await);
        assert!(text.contains(
            "group=readers topic=orders partition=0 lag=10 committed=90 end=100 score=0.99 healthy=true status=- reported_capacity=500 "
        ), "{text}");
        assert!(text.contains(
            "group=readers topic=orders partition=1 lag=5000 committed=- end=5000 score=0.00 healthy=false status=- reported_capacity=- "
        ), "{text}");
        assert!(!text.contains('\x1b'), "{text}");
    }

    #[tokio::test]
    async fn the_terminal_table_colours_rows_by_health() {
        let text = render_terminal(&summaries().await);
        assert!(text.starts_with(CLEAR));
        let row = |p: &str| {
            text.lines()
                .find(|l| l.contains("orders") && l.split_whitespace().nth(1) == Some(p))
                .unwrap_or_else(|| panic!("no row for partition {p}: {text}"))
                .to_owned()
        };
        assert!(row("0").starts_with(GREEN), "{text}");
        // The reported capacity, after the (absent) rate column.
        assert_eq!(row("0").split_whitespace().nth(9), Some("500"), "{text}");
        assert!(row("1").starts_with(RED), "{text}");
        assert!(text.contains("waiting for data"), "{text}");
    }
}
