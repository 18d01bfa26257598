//! `smartkafka-monitor`: the standalone health monitor. It collects the lag
//! of one or more consumer groups (one [`HealthManager`] per group),
//! publishes it to Redis for producers whose smart partitioner reads it
//! from there, serves it as Prometheus metrics and prints it as a live
//! table, until SIGINT or SIGTERM.
//!
//! ```text
//! smartkafka-monitor --bootstrap-servers localhost:9092 --group order-processors --topic orders \
//!     --redis-url redis://127.0.0.1:6379/ --metrics-addr 0.0.0.0:9464
//! smartkafka-monitor --config monitor.toml --quiet
//! ```
//!
//! This file owns the command line, the wiring and the shutdown; `config`
//! the settings, `exporter` the Prometheus page and `table` the terminal.
//!
//! Exit status: 0 after a signal, 2 for a configuration that cannot be
//! used (the message names the key), 1 when something fails at start (the
//! metrics port is taken, say).

#![forbid(unsafe_code)]

mod config;
mod exporter;
mod table;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use smartkafka::health::{HealthManager, RedisCache};

use crate::config::{Args, Settings};
use crate::table::Table;

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match Settings::load(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("smartkafka-monitor: {e}");
            return ExitCode::from(2);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&settings.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    if let Err(e) = logs {
        eprintln!("smartkafka-monitor: logging is off: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("smartkafka-monitor: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smartkafka-monitor: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts everything, refreshes the table and the metrics every refresh
/// interval, and stops cleanly on a signal.
async fn run(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    // Signals first, so one arriving during start-up is not lost.
    let mut shutdown = Box::pin(shutdown_signal()?);

    if let Some(addr) = settings.metrics_addr {
        exporter::install(addr)?;
        eprintln!("smartkafka-monitor: serving metrics at http://{addr}/metrics");
    }

    let mut managers = Vec::with_capacity(settings.groups.len());
    for group in &settings.groups {
        let mut smart = group.smart.clone();
        if let Some(redis) = &settings.redis {
            let cache = RedisCache::new(&redis.url)?
                .key_prefix(group.redis_key_prefix.clone())
                .ttl(redis.ttl);
            smart = smart.publish_to(Arc::new(cache));
        }
        managers.push(HealthManager::start(smart, settings.client.clone())?);
    }
    eprintln!(
        "smartkafka-monitor: watching {}{}",
        settings
            .groups
            .iter()
            .map(|g| format!("{} ({})", g.smart.group, g.smart.topics.join(", ")))
            .collect::<Vec<_>>()
            .join("; "),
        settings
            .redis
            .as_ref()
            .map_or_else(String::new, |r| format!(", publishing to {}", r.url)),
    );

    let table = (!settings.quiet).then(Table::for_stdout);
    let mut ticks = tokio::time::interval(settings.refresh_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => report(&managers, settings.metrics_addr.is_some(), table.as_ref()),
            signal = &mut shutdown => {
                eprintln!("smartkafka-monitor: {signal}, stopping");
                break;
            }
        }
    }

    for manager in &managers {
        manager.stop();
    }
    // The last figures, for whoever scrapes or reads the log one more time.
    report(&managers, settings.metrics_addr.is_some(), table.as_ref());
    Ok(())
}

/// Writes every group's summary to the metrics and the table.
fn report(managers: &[HealthManager], metrics: bool, table: Option<&Table>) {
    let summaries: Vec<_> = managers.iter().map(HealthManager::summary).collect();
    if metrics {
        summaries.iter().for_each(exporter::update);
    }
    if let Some(table) = table {
        table.print(&summaries);
    }
}

/// Resolves with the name of the first SIGINT or SIGTERM received.
fn shutdown_signal()
-> std::io::Result<impl std::future::Future<Output = &'static str> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        })
    }
}
