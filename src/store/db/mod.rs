//! One SQL connection type over two engines: SQLite (the embedded default, through rusqlite) and
//! PostgreSQL (several replicas, through tokio-postgres).
//!
//! The store's SQL is written once, in SQLite's dialect with `?N` parameters, and the same statements
//! run on both: [`pg::translate`] rewrites the few differences for PostgreSQL (parameters, `json_extract`,
//! `julianday`, `INDEXED BY`, `LIKE`). The API mirrors the part of rusqlite the store uses (`execute`,
//! `query_row`, `prepare(..).query_map`, `Row::get`, `params!`, `optional()`), so a query reads the same
//! whichever engine runs it. Rows are read into owned [`Value`]s.
//!
//! The PostgreSQL schema is the SQLite schema with its types mapped ([`pg::schema`]): TEXT timestamps
//! in RFC 3339 UTC, BIGINT integers and booleans, DOUBLE PRECISION reals, so both engines compare,
//! order and round the same way.

pub(crate) mod pg;
mod value;

pub use value::{FromValue, Params, ParamsFromIter, ToValue, Value, params_from_iter};

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", pg::describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("query returned no rows")]
    QueryReturnedNoRows,
    #[error("column {column}: {message}")]
    Type { column: String, message: String },
    #[error("no column named {0}")]
    NoColumn(String),
    #[error("TLS to PostgreSQL: {0}")]
    Tls(String),
}

/// A connection to either engine. Not `Sync` (like rusqlite's): one thread uses it at a time.
pub struct Connection {
    inner: Inner,
}

enum Inner {
    Sqlite(rusqlite::Connection),
    Pg(pg::PgConn),
}

impl Connection {
    pub fn from_sqlite(conn: rusqlite::Connection) -> Self {
        Self { inner: Inner::Sqlite(conn) }
    }

    /// Connects to PostgreSQL (`postgres://…`; TLS with `sslmode=require`, public roots).
    pub fn open_postgres(url: &str) -> Result<Self, Error> {
        Self::open_postgres_with(url, None)
    }

    /// [`Connection::open_postgres`], trusting the CA certificates of `ca_file` (PEM) as well.
    pub fn open_postgres_with(url: &str, ca_file: Option<&std::path::Path>) -> Result<Self, Error> {
        Ok(Self { inner: Inner::Pg(pg::PgConn::connect(url, ca_file)?) })
    }

    pub fn engine(&self) -> Engine {
        match self.inner {
            Inner::Sqlite(_) => Engine::Sqlite,
            Inner::Pg(_) => Engine::Postgres,
        }
    }

    /// True when the PostgreSQL connection was lost (it is not pooled again).
    pub fn is_broken(&self) -> bool {
        match &self.inner {
            Inner::Sqlite(_) => false,
            Inner::Pg(c) => c.is_closed(),
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, WAL checkpoints).
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Pg(_) => None,
        }
    }

    /// `GREATEST` of two values (`MAX(a, b)` in SQLite, which PostgreSQL reads as the aggregate).
    pub fn greatest(&self) -> &'static str {
        match self.engine() {
            Engine::Sqlite => "MAX",
            Engine::Postgres => "GREATEST",
        }
    }

    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize, Error> {
        match &self.inner {
            Inner::Sqlite(c) => {
                let values = params.into_values();
                let mut stmt = c.prepare_cached(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(values.iter()))?)
            }
            Inner::Pg(c) => c.execute(sql, &params.into_values()),
        }
    }

    /// Runs statements separated by `;`, without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<(), Error> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Pg(c) => c.batch(sql),
        }
    }

    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<T, Error>
    where
        P: Params,
        F: FnOnce(&Row) -> Result<T, Error>,
    {
        let rows = self.rows(sql, params.into_values(), Some(1))?;
        match rows.first() {
            Some(row) => f(row),
            None => Err(Error::QueryReturnedNoRows),
        }
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>, Error> {
        Ok(Statement { conn: self, sql: sql.to_string() })
    }

    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>, Error> {
        self.prepare(sql)
    }

    fn rows(&self, sql: &str, values: Vec<Value>, limit: Option<usize>) -> Result<Vec<Row>, Error> {
        match &self.inner {
            Inner::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let names: std::sync::Arc<[String]> = stmt.column_names().iter().map(|s| s.to_string()).collect();
                let count = names.len();
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut cells = Vec::with_capacity(count);
                    for i in 0..count {
                        cells.push(Value::from(r.get::<_, rusqlite::types::Value>(i)?));
                    }
                    out.push(Row { names: names.clone(), cells });
                    if limit.is_some_and(|l| out.len() >= l) {
                        break;
                    }
                }
                Ok(out)
            }
            Inner::Pg(c) => c.query(sql, &values),
        }
    }
}

/// A statement: the SQL, run when queried (engines cache the prepared form per connection).
pub struct Statement<'c> {
    conn: &'c Connection,
    sql: String,
}

impl Statement<'_> {
    pub fn query_map<T, P, F>(&mut self, params: P, mut f: F) -> Result<std::vec::IntoIter<Result<T, Error>>, Error>
    where
        P: Params,
        F: FnMut(&Row) -> Result<T, Error>,
    {
        let rows = self.conn.rows(&self.sql, params.into_values(), None)?;
        Ok(rows.iter().map(&mut f).collect::<Vec<_>>().into_iter())
    }

    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows, Error> {
        Ok(Rows { rows: self.conn.rows(&self.sql, params.into_values(), None)?, at: 0 })
    }

    pub fn exists<P: Params>(&mut self, params: P) -> Result<bool, Error> {
        Ok(!self.conn.rows(&self.sql, params.into_values(), Some(1))?.is_empty())
    }

    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize, Error> {
        self.conn.execute(&self.sql, params)
    }
}

/// The rows of a query, read in full.
pub struct Rows {
    rows: Vec<Row>,
    at: usize,
}

impl Rows {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<&Row>, Error> {
        let row = self.rows.get(self.at);
        self.at += 1;
        Ok(row)
    }
}

/// One row, owned.
#[derive(Debug, Clone)]
pub struct Row {
    names: std::sync::Arc<[String]>,
    cells: Vec<Value>,
}

/// A column by position or by name.
pub trait RowIndex {
    fn index(&self, row: &Row) -> Result<usize, Error>;
}

impl RowIndex for usize {
    fn index(&self, row: &Row) -> Result<usize, Error> {
        if *self < row.cells.len() { Ok(*self) } else { Err(Error::NoColumn(self.to_string())) }
    }
}

impl RowIndex for &str {
    fn index(&self, row: &Row) -> Result<usize, Error> {
        row.names.iter().position(|n| n.eq_ignore_ascii_case(self)).ok_or_else(|| Error::NoColumn(self.to_string()))
    }
}

impl Row {
    /// The column's value as `T` (the same two type parameters as rusqlite's, so `get::<_, T>` reads alike).
    pub fn get<I: RowIndex, T: FromValue>(&self, idx: I) -> Result<T, Error> {
        let i = idx.index(self)?;
        T::from_value(&self.cells[i])
            .map_err(|message| Error::Type { column: self.names.get(i).cloned().unwrap_or_default(), message })
    }

    pub fn values(&self) -> &[Value] {
        &self.cells
    }

    pub fn column_names(&self) -> &[String] {
        &self.names
    }
}

/// `.optional()` on a single-row result, as in rusqlite.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>, Error>;
}

impl<T> OptionalExtension<T> for Result<T, Error> {
    fn optional(self) -> Result<Option<T>, Error> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `params![a, b]`: a parameter list of mixed types, as in rusqlite.
#[macro_export]
macro_rules! sql_params {
    () => { &[] as &[&dyn $crate::store::db::ToValue] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::store::db::ToValue),+] as &[&dyn $crate::store::db::ToValue] };
}
pub use crate::sql_params as params;
