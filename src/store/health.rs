//! Host health samples: one row per host per `health.interval`, the whole reading as JSON plus the
//! figures the history and charts read (CPU, memory, fullest disk, load). Raw rows are kept for
//! `health.raw_retention` (2 days), then rolled up into 5-minute averages (7 days), then hourly ones (3
//! months), then deleted. History is served raw (where kept) or per 5 minutes or per hour, reading raw
//! rows where they exist and the roll-ups before.

use super::db::{Connection, Engine, OptionalExtension, params};
use chrono::{DateTime, DurationRound, Utc};

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
CREATE TABLE IF NOT EXISTS host_rollups (
    host        TEXT NOT NULL,
    resolution  INTEGER NOT NULL,
    bucket      TEXT NOT NULL,
    samples     INTEGER NOT NULL,
    cpu         REAL,
    memory      REAL,
    disk_max    REAL,
    load1       REAL,
    PRIMARY KEY (host, resolution, bucket)
);
";

/// `column` (a stored time) → the start of its bucket of `seconds`, in the stored format.
fn bucket_sql(conn: &Connection, column: &str, seconds: i64) -> String {
    match conn.engine() {
        Engine::Sqlite => format!(
            "strftime('%Y-%m-%dT%H:%M:%S.000Z', (CAST(strftime('%s', {column}) AS INTEGER) / {seconds}) * {seconds}, 'unixepoch')"
        ),
        Engine::Postgres => format!(
            "to_char(to_timestamp(floor(extract(epoch FROM ({column})::timestamptz) / {seconds}) * {seconds}) AT TIME ZONE 'UTC',
                     'YYYY-MM-DD\"T\"HH24:MI:SS.000\"Z\"')"
        ),
    }
}

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

    /// A host's history since `since`, one point per sample (`bucket_seconds` 0, where raw samples are
    /// still kept) or per bucket of 300 or 3600 seconds.
    pub async fn host_history(
        &self,
        host: String,
        since: DateTime<Utc>,
        bucket_seconds: i64,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        self.read(move |conn| {
            let key = if bucket_seconds == 0 { "at".to_string() } else { bucket_sql(conn, "at", bucket_seconds) };
            let mut stmt = conn.prepare(&format!(
                "SELECT {key}, AVG(cpu), AVG(memory), MAX(disk_max), AVG(load1), COUNT(*) FROM host_samples
                 WHERE host = ?1 AND at >= ?2 GROUP BY 1 ORDER BY 1"
            ))?;
            let point = |r: &crate::store::db::Row| {
                Ok(HistoryPoint {
                    at: r.get(0)?,
                    cpu_percent: r.get(1)?,
                    memory_percent: r.get(2)?,
                    disk_max_percent: r.get(3)?,
                    load1: r.get(4)?,
                    samples: r.get(5)?,
                })
            };
            let raw: Vec<HistoryPoint> = stmt.query_map(params![host, ts(since)], point)?.collect::<Result<_, _>>()?;
            if bucket_seconds == 0 {
                return Ok(raw);
            }
            // Before the oldest raw row: the roll-ups, weighted by their sample counts.
            let oldest: Option<String> = conn
                .query_row("SELECT MIN(at) FROM host_samples WHERE host = ?1", [&host], |r| r.get(0))
                .optional()?
                .flatten();
            let key = bucket_sql(conn, "bucket", bucket_seconds);
            let mut stmt = conn.prepare(&format!(
                "SELECT {key}, SUM(cpu * samples) / SUM(samples), SUM(memory * samples) / SUM(samples), MAX(disk_max),
                        SUM(load1 * samples) / SUM(samples), SUM(samples)
                 FROM host_rollups WHERE host = ?1 AND bucket >= ?2 AND (?3 IS NULL OR bucket < ?3)
                   AND resolution <= CASE WHEN ?4 > 300 THEN ?4 ELSE 300 END
                 GROUP BY 1 ORDER BY 1"
            ))?;
            let mut out: Vec<HistoryPoint> =
                stmt.query_map(params![host, ts(since), oldest, bucket_seconds], point)?.collect::<Result<_, _>>()?;
            out.extend(raw);
            Ok(out)
        })
        .await
    }

    /// Raw samples older than `raw_retention` become 5-minute averages, 5-minute ones older than
    /// `five_minute_retention` become hourly ones, hourly ones older than `hourly_retention` go. One
    /// transaction; running it twice changes nothing.
    pub async fn roll_up_hosts(
        &self,
        config: &crate::health::HealthConfig,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let cut = |keep: std::time::Duration, seconds: i64| {
            let t = now - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(3650));
            ts(t.duration_trunc(chrono::Duration::seconds(seconds)).unwrap_or(t))
        };
        let (raw_cut, five_cut, hour_cut) = (
            cut(config.raw_retention, 300),
            cut(config.five_minute_retention, 3600),
            cut(config.hourly_retention, 3600),
        );
        self.write(move |ctx| {
            let conn = ctx.conn();
            let greatest = conn.greatest();
            let upsert = format!("ON CONFLICT(host, resolution, bucket) DO UPDATE SET
                 cpu = (COALESCE(h.cpu, 0) * h.samples + COALESCE(excluded.cpu, 0) * excluded.samples) / (h.samples + excluded.samples),
                 memory = (COALESCE(h.memory, 0) * h.samples + COALESCE(excluded.memory, 0) * excluded.samples) / (h.samples + excluded.samples),
                 disk_max = {greatest}(COALESCE(h.disk_max, 0), COALESCE(excluded.disk_max, 0)),
                 load1 = (COALESCE(h.load1, 0) * h.samples + COALESCE(excluded.load1, 0) * excluded.samples) / (h.samples + excluded.samples),
                 samples = h.samples + excluded.samples");
            conn.execute(
                &format!(
                    "INSERT INTO host_rollups AS h (host, resolution, bucket, samples, cpu, memory, disk_max, load1)
                     SELECT host, 300, {}, COUNT(*), AVG(cpu), AVG(memory), MAX(disk_max), AVG(load1)
                     FROM host_samples WHERE at < ?1 GROUP BY host, 3 {upsert}",
                    bucket_sql(conn, "at", 300)
                ),
                [&raw_cut],
            )?;
            conn.execute("DELETE FROM host_samples WHERE at < ?1", [&raw_cut])?;
            conn.execute(
                &format!(
                    "INSERT INTO host_rollups AS h (host, resolution, bucket, samples, cpu, memory, disk_max, load1)
                     SELECT host, 3600, {}, SUM(samples), SUM(cpu * samples) / SUM(samples),
                            SUM(memory * samples) / SUM(samples), MAX(disk_max), SUM(load1 * samples) / SUM(samples)
                     FROM host_rollups WHERE resolution = 300 AND bucket < ?1 GROUP BY host, 3 {upsert}",
                    bucket_sql(conn, "bucket", 3600)
                ),
                [&five_cut],
            )?;
            conn.execute("DELETE FROM host_rollups WHERE resolution = 300 AND bucket < ?1", [&five_cut])?;
            conn.execute("DELETE FROM host_rollups WHERE resolution = 3600 AND bucket < ?1", [&hour_cut])?;
            Ok(())
        })
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

/// A host's 24-hour figures for the daily report: (min, avg, max) of CPU, memory and the fullest disk,
/// and hourly CPU and memory averages (oldest first).
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostTrend {
    pub host: String,
    pub cpu: Option<(f64, f64, f64)>,
    pub memory: Option<(f64, f64, f64)>,
    pub disk: Option<(f64, f64, f64)>,
    pub hourly_cpu: Vec<Option<f64>>,
    pub hourly_memory: Vec<Option<f64>>,
}

/// A container's latest reading, for "top consumers".
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerUse {
    pub host: String,
    pub name: String,
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub state: String,
}

impl Store {
    pub async fn host_trends(&self, since: DateTime<Utc>) -> Result<Vec<HostTrend>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT host, MIN(cpu), AVG(cpu), MAX(cpu), MIN(memory), AVG(memory), MAX(memory),
                        MIN(disk_max), AVG(disk_max), MAX(disk_max)
                 FROM host_samples WHERE at >= ?1 AND reachable = 1 GROUP BY host ORDER BY host",
            )?;
            let triple =
                |r: &crate::store::db::Row, i: usize| -> Result<Option<(f64, f64, f64)>, crate::store::db::Error> {
                    Ok(
                        match (
                            r.get::<_, Option<f64>>(i)?,
                            r.get::<_, Option<f64>>(i + 1)?,
                            r.get::<_, Option<f64>>(i + 2)?,
                        ) {
                            (Some(a), Some(b), Some(c)) => Some((a, b, c)),
                            _ => None,
                        },
                    )
                };
            let mut trends: Vec<HostTrend> = stmt
                .query_map([ts(since)], |r| {
                    Ok(HostTrend {
                        host: r.get(0)?,
                        cpu: triple(r, 1)?,
                        memory: triple(r, 4)?,
                        disk: triple(r, 7)?,
                        hourly_cpu: Vec::new(),
                        hourly_memory: Vec::new(),
                    })
                })?
                .collect::<Result<_, _>>()?;
            let start = since.duration_trunc(chrono::Duration::hours(1)).unwrap_or(since);
            for t in &mut trends {
                let mut stmt = conn.prepare_cached(
                    "SELECT substr(at, 1, 13), AVG(cpu), AVG(memory) FROM host_samples
                     WHERE host = ?1 AND at >= ?2 GROUP BY 1",
                )?;
                let by_hour: std::collections::HashMap<String, (Option<f64>, Option<f64>)> = stmt
                    .query_map(params![t.host, ts(start)], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
                    .collect::<Result<_, _>>()?;
                for h in 0..24 {
                    let key = ts(start + chrono::Duration::hours(h));
                    let v = by_hour.get(&key[..13]).copied().unwrap_or((None, None));
                    t.hourly_cpu.push(v.0);
                    t.hourly_memory.push(v.1);
                }
            }
            Ok(trends)
        })
        .await
    }

    /// The containers using the most CPU in each host's latest sample, highest first.
    pub async fn top_containers(&self, since: DateTime<Utc>, n: usize) -> Result<Vec<ContainerUse>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT s.sample_json FROM host_samples s
                 JOIN (SELECT host, MAX(at) AS at FROM host_samples WHERE at >= ?1 GROUP BY host) l
                   ON l.host = s.host AND l.at = s.at",
            )?;
            let mut out = Vec::new();
            for json in stmt.query_map([ts(since)], |r| r.get::<_, String>(0))? {
                let sample: HostSample = serde_json::from_str(&json?)?;
                for c in sample.containers {
                    out.push(ContainerUse {
                        host: sample.host.clone(),
                        cpu_percent: c.cpu_percent.unwrap_or(0.0),
                        memory_percent: c.memory_percent.unwrap_or(0.0),
                        name: c.name,
                        state: c.state,
                    });
                }
            }
            out.sort_by(|a, b| b.cpu_percent.total_cmp(&a.cpu_percent));
            out.truncate(n);
            Ok(out)
        })
        .await
    }
}
