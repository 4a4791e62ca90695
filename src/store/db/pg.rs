//! PostgreSQL through tokio-postgres, behind the same blocking calls as SQLite: the store runs its SQL on
//! its writer thread and on blocking reader threads, so each call waits on a private runtime that owns
//! the sockets. Also: the dialect translation, the schema mapping and the value codec.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use regex::Regex;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::{Error, Row, Value};

/// The runtime that drives every PostgreSQL connection's socket (never dropped).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("medic-postgres")
            .enable_all()
            .build()
            .expect("cannot start the PostgreSQL runtime")
    })
}

/// Waits for `f` from a blocking thread (the writer, a reader, the CLI).
fn wait<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

pub(crate) struct PgConn {
    client: tokio_postgres::Client,
    /// Prepared statements by their SQLite text (translated once, on first use).
    statements: RefCell<HashMap<String, tokio_postgres::Statement>>,
}

impl PgConn {
    /// `sslmode=require` (or `prefer`) in the URL: TLS, the server's certificate checked against the
    /// public roots and `ca_file`. Otherwise plain TCP.
    pub(crate) fn connect(url: &str, ca_file: Option<&std::path::Path>) -> Result<Self, Error> {
        let tls = if url.contains("sslmode=require") || url.contains("sslmode=prefer") {
            Some(tls_connector(ca_file)?)
        } else {
            None
        };
        let mut config: tokio_postgres::Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("medic");
        }
        let client = wait(runtime().spawn(async move {
            let client = match tls {
                Some(tls) => {
                    let (client, connection) = config.connect(tls).await?;
                    tokio::spawn(drive(connection));
                    client
                }
                None => {
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(drive(connection));
                    client
                }
            };
            Ok::<_, tokio_postgres::Error>(client)
        }))
        .expect("PostgreSQL runtime task")?;
        Ok(Self { client, statements: RefCell::default() })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement, Error> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let stmt = wait(self.client.prepare(&translate(sql)))?;
        let mut cache = self.statements.borrow_mut();
        if cache.len() > 512 {
            cache.clear();
        }
        cache.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    pub(crate) fn execute(&self, sql: &str, values: &[Value]) -> Result<usize, Error> {
        let stmt = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        Ok(wait(self.client.execute(&stmt, &params))? as usize)
    }

    pub(crate) fn query(&self, sql: &str, values: &[Value]) -> Result<Vec<Row>, Error> {
        let stmt = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let rows = wait(self.client.query(&stmt, &params))?;
        let names: Arc<[String]> = stmt.columns().iter().map(|c| c.name().to_string()).collect();
        rows.iter()
            .map(|r| {
                let cells = (0..names.len()).map(|i| r.try_get::<_, Value>(i)).collect::<Result<Vec<_>, _>>()?;
                Ok(Row { names: names.clone(), cells })
            })
            .collect()
    }

    pub(crate) fn batch(&self, sql: &str) -> Result<(), Error> {
        Ok(wait(self.client.batch_execute(&translate(sql)))?)
    }
}

/// Runs a connection's socket until it ends.
async fn drive<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "PostgreSQL connection ended.");
    }
}

/// rustls with the public roots, plus the certificates of `ca_file` (PEM).
fn tls_connector(ca_file: Option<&std::path::Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| Error::Tls(format!("store.ca_file {}: {e}", path.display())))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| Error::Tls(format!("store.ca_file {}: {e}", path.display())))?;
            roots.add(cert).map_err(|e| Error::Tls(format!("store.ca_file {}: {e}", path.display())))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A PostgreSQL error with the server's message and code, or the client's cause chain.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("PostgreSQL: {} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = format!("PostgreSQL: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// True when the error is the server refusing for lack of space or a lost connection: the write can
/// work later (503, not a bug).
pub(crate) fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(code) => {
            let c = code.code();
            // 53: insufficient resources (disk full, out of memory); 57P: shutdown; 08: connection.
            c.starts_with("53") || c.starts_with("57P") || c.starts_with("08")
        }
        None => e.is_closed() || std::error::Error::source(e).is_some(),
    }
}

/// True for serialization failures and deadlocks (retry the transaction).
pub(crate) fn is_retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == "40001" || c.code() == "40P01")
}

macro_rules! re {
    ($s:expr) => {{
        static R: LazyLock<Regex> = LazyLock::new(|| Regex::new($s).expect("valid regex"));
        &*R
    }};
}

/// SQLite's dialect (as the store writes it) → PostgreSQL's.
pub fn translate(sql: &str) -> String {
    // Parameters: `?N` → `$N`, bare `?` → the next number (SQLite's rule), outside string literals.
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    let mut in_quote = false;
    let mut highest = 0u32;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_quote = !in_quote;
                out.push(c);
            }
            '?' if !in_quote => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let n = if digits.is_empty() { highest + 1 } else { digits.parse().unwrap_or(0) };
                highest = highest.max(n);
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    // `?N IS NULL` alone gives PostgreSQL no type for the parameter; the store only asks it of text.
    let out = re!(r"(?i)(\$\d+) IS (NOT )?NULL").replace_all(&out, "$1::text IS ${2}NULL");
    let out = re!(r"(?i)\bINDEXED BY \w+").replace_all(&out, "");
    let out = re!(r"(?i)^\s*BEGIN IMMEDIATE").replace(&out, "BEGIN");
    let out = re!(r"(?i)json_extract\(\s*([\w.]+)\s*,\s*'\$\.(\w+)'\s*\)").replace_all(&out, "(($1)::jsonb ->> '$2')");
    let out = re!(r"(?i)json_type\(\s*([\w.]+)\s*,\s*'\$\.(\w+)'\s*\)")
        .replace_all(&out, "jsonb_typeof(($1)::jsonb -> '$2')");
    let out =
        re!(r"(?i)julianday\(\s*([\w.]+)\s*\)").replace_all(&out, "(EXTRACT(EPOCH FROM ($1)::timestamptz) / 86400.0)");
    let out = re!(r"(?i)\bLIKE\b").replace_all(&out, "ILIKE");
    let out = re!(r"(?i)\bAS INTEGER\)").replace_all(&out, "AS BIGINT)");
    let out = re!(r"(?i)\bAS REAL\)").replace_all(&out, "AS DOUBLE PRECISION)");
    out.into_owned()
}

const REFUSE: &str = "CREATE OR REPLACE FUNCTION medic_refuse() RETURNS trigger LANGUAGE plpgsql AS
$body$ BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $body$;";

/// The SQLite schema's `CREATE` statements with PostgreSQL's types: the same tables, columns and indexes.
pub fn schema(sqlite: &str) -> String {
    let s = re!(r"(?i)\bINTEGER PRIMARY KEY AUTOINCREMENT\b")
        .replace_all(sqlite, "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY");
    let s = re!(r"(?i)\bINTEGER\b").replace_all(&s, "BIGINT");
    let s = re!(r"(?i)\bREAL\b").replace_all(&s, "DOUBLE PRECISION");
    let s = re!(r"(?i)\bBLOB\b").replace_all(&s, "BYTEA");
    let s = re!(r"(?i)\)\s*WITHOUT ROWID").replace_all(&s, ")");
    // SQLite's `RAISE(ABORT, …)` triggers become one PL/pgSQL function that refuses with the message.
    let s = re!(
        r"(?i)CREATE TRIGGER IF NOT EXISTS (\w+) BEFORE (\w+) ON (\w+)\s+BEGIN SELECT RAISE\(ABORT, '([^']*)'\); END;"
    )
    .replace_all(&s, "CREATE OR REPLACE TRIGGER $1 BEFORE $2 ON $3 FOR EACH ROW EXECUTE FUNCTION medic_refuse('$4');");
    format!("{REFUSE}\n{s}")
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let text = |s: &str, out: &mut BytesMut| s.to_sql(&Type::TEXT, out);
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Integer(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT4) => (*i as f32).to_sql(ty, out),
            (Value::Integer(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Integer(i), _) if is_text(ty) => text(&i.to_string(), out),
            (Value::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (Value::Real(f), &Type::INT8) if f.fract() == 0.0 => (*f as i64).to_sql(ty, out),
            (Value::Real(f), _) if is_text(ty) => text(&f.to_string(), out),
            (Value::Text(s), _) if is_text(ty) => text(s, out),
            (Value::Text(s), &Type::INT8) => s.parse::<i64>()?.to_sql(ty, out),
            (Value::Text(s), &Type::FLOAT8) => s.parse::<f64>()?.to_sql(ty, out),
            (Value::Blob(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out),
            (Value::Blob(b), _) if is_text(ty) => text(std::str::from_utf8(b)?, out),
            (v, ty) => Err(format!("cannot bind {v:?} as PostgreSQL type {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn is_text(ty: &Type) -> bool {
    matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN)
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Integer(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Integer(i16::from_sql(ty, raw)?.into()),
            Type::OID => Value::Integer(u32::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Integer(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::NUMERIC => numeric(raw)?,
            Type::BYTEA => Value::Blob(raw.to_vec()),
            // JSONB's binary form is a version byte, then the text.
            Type::JSONB => Value::Text(std::str::from_utf8(raw.get(1..).unwrap_or_default())?.to_string()),
            _ => Value::Text(std::str::from_utf8(raw)?.to_string()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// NUMERIC's binary form (base-10000 digits) as an integer when it has no fraction, else a real.
fn numeric(raw: &[u8]) -> Result<Value, BoxError> {
    let word = |i: usize| -> Result<i16, BoxError> {
        raw.get(i..i + 2).map(|b| i16::from_be_bytes([b[0], b[1]])).ok_or_else(|| "short NUMERIC".into())
    };
    let ndigits = word(0)? as usize;
    let weight = word(2)? as i32;
    let sign = word(4)? as u16;
    let dscale = word(6)?;
    if sign == 0xC000 {
        return Ok(Value::Real(f64::NAN));
    }
    let mut value = 0f64;
    for i in 0..ndigits {
        let digit = f64::from(word(8 + 2 * i)?);
        value += digit * 10000f64.powi(weight - i as i32);
    }
    if sign == 0x4000 {
        value = -value;
    }
    if dscale == 0 && value.abs() < 9.0e15 { Ok(Value::Integer(value as i64)) } else { Ok(Value::Real(value)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_parameters_and_functions() {
        assert_eq!(translate("SELECT a FROM t WHERE b = ?1 AND c = ?2"), "SELECT a FROM t WHERE b = $1 AND c = $2");
        assert_eq!(translate("x = ? AND y = ? AND z = '?'"), "x = $1 AND y = $2 AND z = '?'");
        assert_eq!(translate("a = ?2 AND b = ?"), "a = $2 AND b = $3");
        assert_eq!(
            translate("SELECT json_extract(v.details, '$.verified') FROM x"),
            "SELECT ((v.details)::jsonb ->> 'verified') FROM x"
        );
        assert_eq!(
            translate("SELECT id FROM incidents INDEXED BY incidents_runnable WHERE"),
            "SELECT id FROM incidents  WHERE"
        );
        assert_eq!(translate("a NOT LIKE 'x%'"), "a NOT ILIKE 'x%'");
        assert_eq!(translate("BEGIN IMMEDIATE"), "BEGIN");
        assert_eq!(translate("(?1 IS NULL OR t >= ?1)"), "($1::text IS NULL OR t >= $1)");
    }

    #[test]
    fn maps_the_schema_types() {
        let s = schema("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, r REAL, b BLOB)");
        assert_eq!(
            s.trim_start_matches(REFUSE).trim(),
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, r DOUBLE PRECISION, b BYTEA)"
        );
    }

    #[test]
    fn decodes_numeric() {
        // 12345.5 = digits [1, 2345, 5000], weight 1, scale 1.
        let raw: Vec<u8> = [3i16, 1, 0, 1, 1, 2345, 5000].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(numeric(&raw).unwrap(), Value::Real(12345.5));
        let raw: Vec<u8> = [1i16, 0, 0x4000u16 as i16, 0, 42].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(numeric(&raw).unwrap(), Value::Integer(-42));
    }
}
