//! `medic store migrate --from sqlite:<file> --to postgres://…`: copies an installation's database into
//! an empty PostgreSQL database, every table and row as stored, in one transaction, and checks the audit
//! chain on both sides (the same number of events, the same last hash, every link and hash verified).
//!
//! The keys in `<data_dir>/secrets/` are not in the database: copy that directory to every replica.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::db::{Connection, Value};
use super::schema::{migrate, read_audit_rows};

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Copy a SQLite installation into an empty PostgreSQL database, verifying the audit chain on both sides.
    Migrate {
        /// The source: `sqlite:<path to medic.db>`.
        #[arg(long)]
        from: String,
        /// The target: `postgres://user:password@host:port/database` (empty; the schema is created).
        #[arg(long)]
        to: String,
    },
}

/// Tables copied, in this order; `leases` (who drives what right now) and `medic_schema` are not.
const SKIP: &[&str] = &["leases", "medic_schema"];

pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    let StoreCommand::Migrate { from, to } = cmd;
    let Some(path) = from.strip_prefix("sqlite:") else {
        bail!("--from must be sqlite:<path to medic.db>, got {from:?}");
    };
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to must be postgres://user:password@host:port/database");
    }
    let report = copy(&PathBuf::from(path), &to)?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// What [`copy`] did.
#[derive(Debug)]
pub struct Report {
    pub tables: Vec<(String, u64)>,
    /// True when MACs and the head were checked (the secrets directory was beside the database).
    pub macs_checked: bool,
    pub audit_events: u64,
    pub last_hash: String,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (table, n) in &self.tables {
            writeln!(f, "copied {n:>8} rows of {table}")?;
        }
        write!(
            f,
            "audit chain verified on both sides{}: {} events, last hash {}\n\
             next: copy <data_dir>/secrets/ to every replica, then start them with store.url set",
            if self.macs_checked {
                " (links, hashes, MACs and head)"
            } else {
                " (links and hashes; no secrets/ beside the database)"
            },
            self.audit_events,
            self.last_hash
        )
    }
}

/// Copies every table of the SQLite file at `path` into the empty PostgreSQL database at `url`.
pub fn copy(path: &std::path::Path, url: &str) -> anyhow::Result<Report> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    let sqlite = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let source = Connection::from_sqlite(sqlite);
    // With the installation's secrets beside the database, each row's MAC and the head are checked too.
    let secrets_dir = path.parent().map(|d| d.join("secrets")).filter(|d| d.join("audit_key").exists());
    let anchor = match &secrets_dir {
        Some(dir) => Some(
            crate::audit::anchor::AuditAnchor::open(&crate::secrets::SecretsDir::open(dir.parent().unwrap_or(dir))?)
                .context("cannot read the audit key beside the database")?,
        ),
        None => None,
    };
    let before = crate::audit::verify_anchored(read_audit_rows(&source)?, anchor.as_ref())
        .map_err(|e| anyhow::anyhow!("the source's audit chain is broken at seq {}: {e}; nothing copied", e.seq()))?;
    let source_tip = super::schema::load_tip(&source)?;

    let target = Connection::open_postgres(url).with_context(|| format!("cannot connect to {}", redact(url)))?;
    migrate(&target)?;
    let existing: i64 = target.query_row("SELECT COUNT(*) FROM incidents", [], |r| r.get(0))?;
    let audit_existing: i64 = target.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?;
    if existing > 0 || audit_existing > 0 {
        bail!("the target database already holds incidents or audit events; migrate into an empty database");
    }

    let mut stmt = source
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let tables: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    target.execute_batch("BEGIN")?;
    let copied = (|| -> anyhow::Result<Vec<(String, u64)>> {
        let mut copied = Vec::new();
        for table in tables.iter().filter(|t| !SKIP.contains(&t.as_str())) {
            copied.push((table.clone(), copy_table(&source, &target, table)?));
        }
        Ok(copied)
    })();
    let copied = match copied {
        Ok(c) => {
            target.execute_batch("COMMIT")?;
            c
        }
        Err(e) => {
            let _ = target.execute_batch("ROLLBACK");
            return Err(e.context("nothing was copied (rolled back)"));
        }
    };

    let after = crate::audit::verify_anchored(read_audit_rows(&target)?, anchor.as_ref())
        .map_err(|e| anyhow::anyhow!("the copied audit chain does not verify at seq {}: {e}", e.seq()))?;
    let target_tip = super::schema::load_tip(&target)?;
    if after != before || target_tip.hash != source_tip.hash {
        bail!(
            "the copy differs: {before} events ending {} at the source, {after} ending {} at the target",
            source_tip.hash,
            target_tip.hash
        );
    }
    Ok(Report { tables: copied, macs_checked: anchor.is_some(), audit_events: after, last_hash: target_tip.hash })
}

/// Copies one table's rows as stored; identity columns continue after the highest copied id.
fn copy_table(source: &Connection, target: &Connection, table: &str) -> anyhow::Result<u64> {
    if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("unexpected table name {table:?}");
    }
    let exists: i64 = target.query_row(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?1",
        [table],
        |r| r.get(0),
    )?;
    if exists == 0 {
        bail!("table {table} has no counterpart in the PostgreSQL schema");
    }
    let mut stmt = source.prepare(&format!("SELECT * FROM {table}"))?;
    let mut rows = stmt.query([])?;
    let mut n = 0u64;
    let mut insert: Option<String> = None;
    while let Some(row) = rows.next()? {
        let sql = insert.get_or_insert_with(|| {
            let cols = row.column_names().join(", ");
            let params: Vec<String> = (1..=row.values().len()).map(|i| format!("?{i}")).collect();
            format!("INSERT INTO {table} ({cols}) VALUES ({})", params.join(", "))
        });
        let values: Vec<Value> = row.values().to_vec();
        target
            .execute(sql, super::db::params_from_iter(values.iter()))
            .with_context(|| format!("copying a row of {table}"))?;
        n += 1;
    }
    // Tables with an identity `id` continue numbering after the rows copied.
    let identity: i64 = target.query_row(
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema()
           AND table_name = ?1 AND column_name = 'id' AND is_identity = 'YES'",
        [table],
        |r| r.get(0),
    )?;
    if identity > 0 {
        target.query_row(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            ),
            [],
            |_| Ok(()),
        )?;
    }
    Ok(n)
}

/// The URL with its password masked, for messages.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("********"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
