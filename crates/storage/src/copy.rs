//! Copying an embedded SQLite store into PostgreSQL, for a deployment that
//! outgrew one machine. Table by table in foreign-key order, row by row
//! with `ON CONFLICT DO NOTHING`, so a copy that stopped half-way is simply
//! run again; then every table is verified by row count and by an
//! order-independent checksum of its rows, computed the same way on both
//! sides. Sealed values are copied as they are: they stay sealed under the
//! same keys, so the nodes must be given the SQLite store's master key.
//!
//! Not copied: the failure counters and leases (live state that lapses
//! anyway) and the gallery change log (a node loads its galleries from the
//! templates at start; the log only carries changes between nodes).

use postgres::types::ToSql;
use rusqlite::types::Value;
use sha2::{Digest, Sha256};

use crate::{PostgresStore, Result, SqliteStore, StoreError};

/// In foreign-key order.
const TABLES: &[&str] = &[
    "tenants",
    "clients",
    "signing_keys",
    "secrets",
    "tenant_models",
    "tenant_origins",
    "faces",
    "templates",
    "sessions",
    "session_frames",
];

/// One table's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    pub table: &'static str,
    /// Rows in the SQLite store.
    pub rows: usize,
    /// Rows this run added (the rest were there from an earlier run).
    pub added: usize,
    /// Whether PostgreSQL now holds exactly the same rows.
    pub verified: bool,
}

#[derive(Clone, Copy)]
enum Kind {
    Integer,
    Text,
    Bytes,
}

impl Kind {
    fn of(pg_type: &str) -> Result<Self> {
        match pg_type {
            "bigint" | "integer" | "smallint" => Ok(Kind::Integer),
            "text" => Ok(Kind::Text),
            "bytea" => Ok(Kind::Bytes),
            other => Err(StoreError::Config(format!("cannot copy a column of type {other}"))),
        }
    }

    fn cast(self) -> &'static str {
        match self {
            Kind::Integer => "BIGINT",
            Kind::Text => "TEXT",
            Kind::Bytes => "BYTEA",
        }
    }
}

/// Copies every table of `from` into `to` (migrated) and verifies it.
pub fn copy_sqlite_to_postgres(from: &SqliteStore, to: &PostgresStore) -> Result<Vec<TableCopy>> {
    copy_in_pages(from, to, PAGE_ROWS)
}

/// Rows read, written and checked per statement: each statement stays far
/// inside the statement timeout, and memory holds one page, not a table of
/// sealed images (a 1M-face gallery's are about 20 GB).
const PAGE_ROWS: usize = 1_000;

/// Heap blocks of PostgreSQL read per statement by the check (8 KB each;
/// sealed images live out of line, in TOAST).
const CHECKED_BLOCKS: usize = 8;

/// [`copy_sqlite_to_postgres`], `page` rows per statement (tests use a small
/// page to cross page boundaries).
pub fn copy_in_pages(from: &SqliteStore, to: &PostgresStore, page: usize) -> Result<Vec<TableCopy>> {
    TABLES.iter().map(|table| copy_table(from, to, table, page)).collect()
}

/// The columns both sides have, with PostgreSQL's kind of each.
fn columns(from: &SqliteStore, to: &PostgresStore, table: &str) -> Result<Vec<(String, Kind)>> {
    let sqlite: Vec<String> = {
        let conn = from.conn();
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
        stmt.query_map([], |r| r.get(1))?.collect::<rusqlite::Result<_>>()?
    };
    let rows = to.conn()?.query(
        "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns WHERE table_name = $1",
        &[&table],
    )?;
    let pg: std::collections::HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    sqlite
        .into_iter()
        .filter_map(|c| pg.get(&c).map(|t| Kind::of(t).map(|k| (c.clone(), k))))
        .collect()
}

fn copy_table(from: &SqliteStore, to: &PostgresStore, table: &'static str, page: usize) -> Result<TableCopy> {
    let columns = columns(from, to, table)?;
    let names = columns.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ");
    let params = (1..=columns.len())
        .zip(&columns)
        .map(|(i, (_, k))| format!("${i}::{}", k.cast()))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!("INSERT INTO {table} ({names}) VALUES ({params}) ON CONFLICT DO NOTHING");
    // In insertion order, so PostgreSQL's own sequence columns keep it.
    let read = format!("SELECT rowid, {names} FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2");
    let (mut rows, mut added, mut sqlite_sum, mut after) = (0usize, 0u64, 0u128, 0i64);
    loop {
        let batch = sqlite_page(from, &read, after, page, columns.len())?;
        let Some((last, _)) = batch.last() else { break };
        after = *last;
        // Each page commits alone: a copy that stops keeps what it wrote,
        // and the next run skips it.
        let mut conn = to.conn()?;
        let mut tx = conn.transaction()?;
        let statement = tx.prepare(&insert)?;
        for (_, row) in &batch {
            let values: Vec<Box<dyn ToSql + Sync>> = row.iter().zip(&columns).map(|(v, (_, k))| param(v, *k)).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| b.as_ref()).collect();
            added += tx.execute(&statement, &refs)?;
            sqlite_sum = sqlite_sum.wrapping_add(row_hash(row));
        }
        tx.commit()?;
        rows += batch.len();
        if batch.len() < page {
            break;
        }
    }
    let (pg_rows, pg_sum) = postgres_checksum(to, table, &columns, CHECKED_BLOCKS)?;
    Ok(TableCopy {
        table,
        rows,
        added: usize::try_from(added).unwrap_or(usize::MAX),
        verified: pg_rows == rows && pg_sum == sqlite_sum,
    })
}

/// Up to `page` rows after `rowid` `after`, each with its rowid.
fn sqlite_page(from: &SqliteStore, read: &str, after: i64, page: usize, n: usize) -> Result<Vec<(i64, Vec<Value>)>> {
    let conn = from.conn();
    let mut stmt = conn.prepare_cached(read)?;
    let limit = i64::try_from(page).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(rusqlite::params![after, limit], |r| {
            Ok((
                r.get(0)?,
                (1..=n).map(|i| r.get::<_, Value>(i)).collect::<rusqlite::Result<_>>()?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

fn param(value: &Value, kind: Kind) -> Box<dyn ToSql + Sync> {
    match (value, kind) {
        (Value::Integer(i), _) => Box::new(Some(*i)),
        (Value::Text(t), _) => Box::new(Some(t.clone())),
        (Value::Blob(b), _) => Box::new(Some(b.clone())),
        (Value::Real(r), _) => Box::new(Some(r.to_string())),
        (Value::Null, Kind::Integer) => Box::new(None::<i64>),
        (Value::Null, Kind::Text) => Box::new(None::<String>),
        (Value::Null, Kind::Bytes) => Box::new(None::<Vec<u8>>),
    }
}

/// An order-independent digest of one row: the sum over rows of these is
/// the table's checksum on either side.
fn row_hash(row: &[Value]) -> u128 {
    let mut hasher = Sha256::new();
    for value in row {
        match value {
            Value::Null => hasher.update([0u8]),
            Value::Integer(i) => {
                hasher.update([1u8]);
                hasher.update(i.to_le_bytes());
            }
            Value::Real(r) => {
                hasher.update([2u8]);
                hasher.update(r.to_string().as_bytes());
            }
            Value::Text(t) => {
                hasher.update([2u8]);
                hasher.update((t.len() as u64).to_le_bytes());
                hasher.update(t.as_bytes());
            }
            Value::Blob(b) => {
                hasher.update([3u8]);
                hasher.update((b.len() as u64).to_le_bytes());
                hasher.update(b);
            }
        }
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(first)
}

fn postgres_checksum(
    to: &PostgresStore,
    table: &str,
    columns: &[(String, Kind)],
    blocks_per_read: usize,
) -> Result<(usize, u128)> {
    let select = columns
        .iter()
        .map(|(c, k)| format!("{c}::{}", k.cast()))
        .collect::<Vec<_>>()
        .join(", ");
    // In ranges of heap blocks (TID range scans): every table has them,
    // whatever its key, and each statement reads a few blocks only.
    let query = format!("SELECT {select} FROM {table} WHERE ctid >= $1::TEXT::TID AND ctid < $2::TEXT::TID");
    let blocks: i64 = to
        .conn()?
        .query_one(
            "SELECT pg_relation_size($1::TEXT::REGCLASS) / current_setting('block_size')::BIGINT",
            &[&table],
        )?
        .get(0);
    let (mut count, mut sum) = (0usize, 0u128);
    for start in (0..blocks).step_by(blocks_per_read) {
        let end = start.saturating_add(i64::try_from(blocks_per_read).unwrap_or(i64::MAX));
        let range = (format!("({start},0)"), format!("({end},0)"));
        let rows = to.conn()?.query(&query, &[&range.0, &range.1])?;
        for r in &rows {
            let values: Vec<Value> = columns
                .iter()
                .enumerate()
                .map(|(i, (_, k))| match k {
                    Kind::Integer => r.get::<_, Option<i64>>(i).map_or(Value::Null, Value::Integer),
                    Kind::Text => r.get::<_, Option<String>>(i).map_or(Value::Null, Value::Text),
                    Kind::Bytes => r.get::<_, Option<Vec<u8>>>(i).map_or(Value::Null, Value::Blob),
                })
                .collect();
            sum = sum.wrapping_add(row_hash(&values));
        }
        count += rows.len();
    }
    Ok((count, sum))
}
