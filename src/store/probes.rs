//! Probe history: every sample for `probe.raw_retention` (48 h), then 5-minute buckets for
//! `five_minute_retention` (7 days), then hourly buckets for `hourly_retention` (90 days), then nothing.
//! A bucket keeps its sample count, successes, latency sum and maximum, and the median and 95th
//! percentile of its samples (an hourly bucket keeps the sample-weighted mean of its 5-minute medians and
//! the largest of their 95th percentiles: an upper bound). Uptime and latency figures read raw samples
//! where they exist and buckets before that.

use crate::store::db::{Connection, OptionalExtension, params};
use chrono::{DateTime, Duration, DurationRound, Utc};

use super::{Store, StoreError, parse_ts, ts};
use crate::probe::ProbeSettings;
use crate::probe::state::ProbeState;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS probe_samples (
    probe       TEXT NOT NULL,
    at          TEXT NOT NULL,
    ok          INTEGER NOT NULL,
    latency_ms  REAL NOT NULL,
    -- up | slow | down | recovery (the sample that recovered) | unknown
    state       TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS probe_samples_probe_at ON probe_samples(probe, at);
CREATE INDEX IF NOT EXISTS probe_samples_at ON probe_samples(at);
CREATE TABLE IF NOT EXISTS probe_rollups (
    probe        TEXT NOT NULL,
    -- bucket length in seconds: 300 or 3600
    resolution   INTEGER NOT NULL,
    bucket       TEXT NOT NULL,
    samples      INTEGER NOT NULL,
    ok           INTEGER NOT NULL,
    latency_sum  REAL NOT NULL,
    latency_max  REAL NOT NULL,
    p50          REAL NOT NULL,
    p95          REAL NOT NULL,
    PRIMARY KEY (probe, resolution, bucket)
);
";

/// One check's result, as stored.
#[derive(Debug, Clone)]
pub struct Sample {
    pub probe: String,
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub latency_ms: f64,
    pub state: String,
    pub detail: String,
}

/// A probe's figures over a window.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Uptime {
    pub samples: u64,
    /// Percent of checks that succeeded; None without samples.
    pub uptime_percent: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn bucket_of(t: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    t.duration_trunc(Duration::seconds(seconds)).unwrap_or(t)
}

fn cutoff(now: DateTime<Utc>, keep: std::time::Duration) -> DateTime<Utc> {
    now - Duration::from_std(keep).unwrap_or(Duration::days(3650))
}

/// Raw samples older than the raw cutoff become 5-minute buckets; 5-minute buckets older than theirs
/// become hourly ones; hourly ones older than theirs go. One transaction.
fn roll_up(conn: &Connection, now: DateTime<Utc>, settings: &ProbeSettings) -> Result<(u64, u64), StoreError> {
    let raw_cut = ts(bucket_of(cutoff(now, settings.raw_retention), 300));
    let mut stmt =
        conn.prepare("SELECT probe, at, ok, latency_ms FROM probe_samples WHERE at < ?1 ORDER BY probe, at")?;
    let mut buckets: std::collections::BTreeMap<(String, String), Vec<(bool, f64)>> = Default::default();
    for row in stmt.query_map([&raw_cut], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?, r.get::<_, f64>(3)?))
    })? {
        let (probe, at, ok, latency) = row?;
        let bucket = ts(bucket_of(parse_ts(&at)?, 300));
        buckets.entry((probe, bucket)).or_default().push((ok, latency));
    }
    let rolled = buckets.len() as u64;
    for ((probe, bucket), values) in buckets {
        let mut lat: Vec<f64> = values.iter().map(|v| v.1).collect();
        lat.sort_by(f64::total_cmp);
        let ok = values.iter().filter(|v| v.0).count() as i64;
        conn.execute(
            &format!("INSERT INTO probe_rollups AS r (probe, resolution, bucket, samples, ok, latency_sum, latency_max, p50, p95)
             VALUES (?1, 300, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(probe, resolution, bucket) DO UPDATE SET
               samples = r.samples + excluded.samples, ok = r.ok + excluded.ok,
               latency_sum = r.latency_sum + excluded.latency_sum, latency_max = {g}(r.latency_max, excluded.latency_max),
               p50 = excluded.p50, p95 = {g}(r.p95, excluded.p95)", g = conn.greatest()),
            params![
                probe,
                bucket,
                values.len() as i64,
                ok,
                lat.iter().sum::<f64>(),
                lat.last().copied().unwrap_or(0.0),
                percentile(&lat, 50.0),
                percentile(&lat, 95.0)
            ],
        )?;
    }
    conn.execute("DELETE FROM probe_samples WHERE at < ?1", [&raw_cut])?;
    let five_cut = ts(bucket_of(cutoff(now, settings.five_minute_retention), 3600));
    conn.execute(
        &format!("INSERT INTO probe_rollups AS r (probe, resolution, bucket, samples, ok, latency_sum, latency_max, p50, p95)
         SELECT probe, 3600, substr(bucket, 1, 13) || ':00:00.000Z', SUM(samples), SUM(ok), SUM(latency_sum),
                MAX(latency_max), SUM(p50 * samples) / SUM(samples), MAX(p95)
         FROM probe_rollups WHERE resolution = 300 AND bucket < ?1 GROUP BY probe, substr(bucket, 1, 13)
         ON CONFLICT(probe, resolution, bucket) DO UPDATE SET
           samples = r.samples + excluded.samples, ok = r.ok + excluded.ok,
           latency_sum = r.latency_sum + excluded.latency_sum, latency_max = {g}(r.latency_max, excluded.latency_max),
           p50 = excluded.p50, p95 = {g}(r.p95, excluded.p95)", g = conn.greatest()),
        [&five_cut],
    )?;
    conn.execute("DELETE FROM probe_rollups WHERE resolution = 300 AND bucket < ?1", [&five_cut])?;
    let pruned = conn.execute(
        "DELETE FROM probe_rollups WHERE resolution = 3600 AND bucket < ?1",
        [ts(cutoff(now, settings.hourly_retention))],
    )? as u64;
    Ok((rolled, pruned))
}

fn uptime(conn: &Connection, probe: &str, since: DateTime<Utc>) -> Result<Uptime, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT ok, latency_ms FROM probe_samples WHERE probe = ?1 AND at >= ?2")?;
    let raw: Vec<(bool, f64)> =
        stmt.query_map(params![probe, ts(since)], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let oldest_raw: Option<String> = conn
        .query_row("SELECT MIN(at) FROM probe_samples WHERE probe = ?1", [probe], |r| r.get(0))
        .optional()?
        .flatten();
    // Buckets cover what raw samples no longer do.
    let (b_samples, b_ok, b_p50, b_p95): (i64, i64, Option<f64>, Option<f64>) = conn.query_row(
        "SELECT COALESCE(SUM(samples), 0), COALESCE(SUM(ok), 0), SUM(p50 * samples) / SUM(samples), MAX(p95)
         FROM probe_rollups WHERE probe = ?1 AND bucket >= ?2 AND (?3 IS NULL OR bucket < ?3)",
        params![probe, ts(bucket_of(since, 300)), oldest_raw],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let samples = raw.len() as u64 + b_samples as u64;
    let ok = raw.iter().filter(|r| r.0).count() as u64 + b_ok as u64;
    let mut lat: Vec<f64> = raw.iter().map(|r| r.1).collect();
    lat.sort_by(f64::total_cmp);
    let (p50, p95) =
        if lat.is_empty() { (b_p50, b_p95) } else { (Some(percentile(&lat, 50.0)), Some(percentile(&lat, 95.0))) };
    Ok(Uptime {
        samples,
        uptime_percent: (samples > 0).then(|| 100.0 * ok as f64 / samples as f64),
        latency_p50_ms: p50,
        latency_p95_ms: p95,
    })
}

/// The latest sample of a probe: (at, ok, latency_ms, state, detail).
pub type LastSample = (String, bool, f64, String, String);

/// Uptime per hour over the last 24 hours (oldest first; None: no samples that hour).
fn hourly_uptime(conn: &Connection, probe: &str, now: DateTime<Utc>) -> Result<Vec<Option<f64>>, StoreError> {
    let start = bucket_of(now - Duration::hours(23), 3600);
    let mut stmt = conn.prepare_cached(
        "SELECT substr(at, 1, 13), SUM(ok), COUNT(*) FROM probe_samples WHERE probe = ?1 AND at >= ?2 GROUP BY 1",
    )?;
    let by_hour: std::collections::HashMap<String, (i64, i64)> = stmt
        .query_map(params![probe, ts(start)], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
        .collect::<Result<_, _>>()?;
    Ok((0..24)
        .map(|h| {
            let hour = ts(start + Duration::hours(h));
            by_hour.get(&hour[..13]).map(|(ok, n)| 100.0 * *ok as f64 / (*n).max(1) as f64)
        })
        .collect())
}

impl Store {
    pub async fn record_probe_sample(&self, s: Sample) -> Result<(), StoreError> {
        self.write(move |ctx| {
            ctx.conn().execute(
                "INSERT INTO probe_samples (probe, at, ok, latency_ms, state, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.probe, ts(s.at), s.ok, s.latency_ms, s.state, s.detail],
            )?;
            Ok(())
        })
        .await
    }

    /// The state a probe was last in, and since when it has been down (if it is).
    pub async fn probe_last_state(&self, probe: String) -> Result<(ProbeState, Option<DateTime<Utc>>), StoreError> {
        self.read(move |conn| {
            let last: Option<String> = conn
                .query_row("SELECT state FROM probe_samples WHERE probe = ?1 ORDER BY at DESC LIMIT 1", [&probe], |r| {
                    r.get(0)
                })
                .optional()?;
            let state = last.as_deref().map(ProbeState::parse).unwrap_or(ProbeState::Unknown);
            let since = if state == ProbeState::Down {
                let t: Option<String> = conn.query_row(
                    "SELECT MIN(at) FROM probe_samples WHERE probe = ?1 AND state = 'down' AND at > COALESCE(
                       (SELECT MAX(at) FROM probe_samples WHERE probe = ?1 AND state != 'down'), '')",
                    [&probe],
                    |r| r.get(0),
                )?;
                t.map(|t| parse_ts(&t)).transpose()?
            } else {
                None
            };
            Ok((state, since))
        })
        .await
    }

    pub async fn last_probe_sample(&self, probe: String) -> Result<Option<LastSample>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT at, ok, latency_ms, state, detail FROM probe_samples WHERE probe = ?1 ORDER BY at DESC LIMIT 1",
                    [&probe],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?)
        })
        .await
    }

    /// Uptime and latency percentiles of a probe since `since`.
    pub async fn probe_uptime(&self, probe: String, since: DateTime<Utc>) -> Result<Uptime, StoreError> {
        self.read(move |conn| uptime(conn, &probe, since)).await
    }

    pub async fn probe_hourly_uptime(&self, probe: String) -> Result<Vec<Option<f64>>, StoreError> {
        self.read(move |conn| hourly_uptime(conn, &probe, Utc::now())).await
    }

    /// Rolls up and prunes the probe history; returns (5-minute buckets written, hourly buckets pruned).
    pub async fn roll_up_probes(&self, settings: &ProbeSettings) -> Result<(u64, u64), StoreError> {
        let settings = settings.clone();
        self.write(move |ctx| {
            let now = ctx.now();
            roll_up(ctx.conn(), now, &settings)
        })
        .await
    }

    /// [`Store::roll_up_probes`] as if it were `now` (tests and benchmarks).
    pub async fn roll_up_probes_at(
        &self,
        settings: &ProbeSettings,
        now: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        let settings = settings.clone();
        self.write(move |ctx| roll_up(ctx.conn(), now, &settings)).await
    }
}

impl Store {
    /// Probes with samples since `since`, by name.
    pub async fn probes_seen_since(&self, since: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare("SELECT DISTINCT probe FROM probe_samples WHERE at >= ?1 ORDER BY probe")?;
            let rows = stmt.query_map([ts(since)], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_small_sets() {
        let v = [1.0, 2.0, 3.0, 4.0, 100.0];
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert_eq!(percentile(&v, 95.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
