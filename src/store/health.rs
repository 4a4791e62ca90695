//! Host health samples: one row per host per `health.interval`, the whole reading as JSON plus the
//! figures the history and charts read (CPU, memory, fullest disk, load), pruned after
//! `health.retention`. History is served raw or averaged per hour or per 5 minutes.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, parse_ts, ts};
use crate::health::HostSample;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS host_samples (
    host        TEXT NOT NULL,
    at          TEXT NOT NULL,
    reachable   INTEGER NOT NULL,
    cpu         REAL,
    memory      REAL,
    disk_max    REAL,
    load1       REAL,
    sample_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS host_samples_host_at ON host_samples(host, at);
CREATE INDEX IF NOT EXISTS host_samples_at ON host_samples(at);
";

/// One point of a host's history (averages over the bucket; maxima for the disk).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct HistoryPoint {
    pub at: String,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub disk_max_percent: Option<f64>,
    pub load1: Option<f64>,
    pub samples: u64,
}

impl Store {
    pub async fn record_host_sample(&self, s: HostSample) -> Result<(), StoreError> {
        self.write(move |ctx| {
            ctx.conn().execute(
                "INSERT INTO host_samples (host, at, reachable, cpu, memory, disk_max, load1, sample_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    s.host,
                    ts(s.at),
                    s.reachable,
                    s.cpu_percent,
                    s.memory.map(|m| m.used_percent),
                    s.disk_max(),
                    s.load.map(|l| l[0]),
                    serde_json::to_string(&s)?
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn latest_host_sample(&self, host: String) -> Result<Option<HostSample>, StoreError> {
        self.read(move |conn| {
            let json: Option<String> = conn
                .query_row(
                    "SELECT sample_json FROM host_samples WHERE host = ?1 ORDER BY at DESC LIMIT 1",
                    [&host],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
        })
        .await
    }

    /// A host's history since `since`, one point per sample (`bucket_seconds` 0) or per bucket.
    pub async fn host_history(
        &self,
        host: String,
        since: DateTime<Utc>,
        bucket_seconds: i64,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        self.read(move |conn| {
            let key = match bucket_seconds {
                0 => "at".to_string(),
                3600 => "substr(at, 1, 13) || ':00:00Z'".to_string(),
                _ => format!(
                    "strftime('%Y-%m-%dT%H:%M:00Z', (CAST(strftime('%s', at) AS INTEGER) / {b}) * {b}, 'unixepoch')",
                    b = bucket_seconds.max(1)
                ),
            };
            let mut stmt = conn.prepare(&format!(
                "SELECT {key}, AVG(cpu), AVG(memory), MAX(disk_max), AVG(load1), COUNT(*) FROM host_samples
                 WHERE host = ?1 AND at >= ?2 GROUP BY 1 ORDER BY 1"
            ))?;
            let rows = stmt.query_map(params![host, ts(since)], |r| {
                Ok(HistoryPoint {
                    at: r.get(0)?,
                    cpu_percent: r.get(1)?,
                    memory_percent: r.get(2)?,
                    disk_max_percent: r.get(3)?,
                    load1: r.get(4)?,
                    samples: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Deletes samples older than `keep`; returns how many.
    pub async fn prune_host_samples(&self, keep: std::time::Duration) -> Result<u64, StoreError> {
        let cutoff = Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(3650));
        self.write(move |ctx| Ok(ctx.conn().execute("DELETE FROM host_samples WHERE at < ?1", [ts(cutoff)])? as u64))
            .await
    }

    /// When a host was last sampled (the newest row).
    pub async fn host_sampled_at(&self, host: String) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(move |conn| {
            let t: Option<String> = conn
                .query_row("SELECT MAX(at) FROM host_samples WHERE host = ?1", [&host], |r| r.get(0))
                .optional()?
                .flatten();
            t.map(|t| parse_ts(&t)).transpose()
        })
        .await
    }
}
