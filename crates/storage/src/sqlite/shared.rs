//! SQLite implementation of [`SharedStore`]. One process owns the file, so
//! the log never shows a gap and a lease only ever has one contender; the
//! same contract holds anyway, so the server needs no second code path.

use rusqlite::{OptionalExtension, TransactionBehavior, params, params_from_iter};

use super::SqliteStore;
use crate::shared::{ChangeKind, FailureCount, GalleryChange, Reservation, SharedStore};
use crate::vector_from;
use crate::{Result, Timestamp};

impl SharedStore for SqliteStore {
    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn()
            .query_row("SELECT sealed FROM secrets WHERE name = ?1", [name], |r| r.get(0))
            .optional()?)
    }

    fn put_secret_once(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO secrets (name, sealed) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![name, sealed],
        )?;
        Ok(conn.query_row("SELECT sealed FROM secrets WHERE name = ?1", [name], |r| r.get(0))?)
    }

    fn holds_sealed_images(&self) -> Result<bool> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM faces) OR EXISTS (SELECT 1 FROM sessions)",
            [],
            |r| r.get(0),
        )?)
    }

    fn reserve_attempt(&self, limits: &[(String, u32)], now: Timestamp, window: i64) -> Result<Reservation> {
        let mut conn = self.conn();
        // The connection's lock and an immediate transaction: no other
        // writer, of this process or another, between reading and writing.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored = {
            let mut read =
                tx.prepare_cached("SELECT count, pending, window_start FROM auth_failures WHERE key = ?1")?;
            limits
                .iter()
                .map(|(key, _)| {
                    read.query_row([key], |r| {
                        Ok(FailureCount {
                            count: r.get(0)?,
                            pending: r.get(1)?,
                            window_start: r.get(2)?,
                        })
                    })
                    .optional()
                })
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        let (reservation, written) = crate::shared::reserve(&stored, limits, now, window);
        if reservation.granted {
            for ((key, _), c) in limits.iter().zip(&written) {
                tx.execute(
                    "INSERT INTO auth_failures (key, count, pending, window_start) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(key) DO UPDATE SET count = ?2, pending = ?3, window_start = ?4",
                    params![key, c.count, c.pending, c.window_start],
                )?;
            }
        }
        tx.commit()?;
        Ok(reservation)
    }

    fn settle_attempt(&self, keys: &[String], failed: bool) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for key in keys {
            tx.execute(
                "UPDATE auth_failures SET pending = MAX(pending - 1, 0), count = count + ?2 WHERE key = ?1",
                params![key, i32::from(failed)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn clear_failures(&self, key: &str) -> Result<()> {
        self.conn()
            .execute("UPDATE auth_failures SET count = 0 WHERE key = ?1", [key])?;
        Ok(())
    }

    fn prune_failures(&self, before: Timestamp) -> Result<usize> {
        Ok(self
            .conn()
            .execute("DELETE FROM auth_failures WHERE window_start < ?1", [before])?)
    }

    fn acquire_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        let won: Option<String> = self
            .conn()
            .query_row(
                "INSERT INTO leases (name, holder, until_ms) VALUES (?1, ?2, ?4)
                 ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
                 WHERE leases.holder = excluded.holder OR leases.until_ms <= ?3
                 RETURNING holder",
                params![name, holder, now_ms, until_ms],
                |r| r.get(0),
            )
            .optional()?;
        Ok(won.is_some())
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM leases WHERE name = ?1 AND holder = ?2", [name, holder])?;
        Ok(())
    }

    fn gallery_changes(
        &self,
        after: i64,
        also: &[i64],
        model_version: &str,
        limit: usize,
    ) -> Result<Vec<GalleryChange>> {
        let conn = self.conn();
        // `also` is short (positions seen missing, usually none): inline
        // placeholders keep this one statement.
        let listed = (0..also.len())
            .map(|i| format!("?{}", i + 4))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT c.seq, c.tenant_id, c.face_id, c.kind, t.vector FROM gallery_changes c
             LEFT JOIN templates t ON t.face_id = c.face_id AND t.model_version = ?2
             WHERE c.seq > ?1 OR c.seq IN ({listed}) ORDER BY c.seq LIMIT ?3"
        );
        let mut stmt = conn.prepare(&sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let head: [rusqlite::types::Value; 3] = [after.into(), model_version.to_string().into(), limit.into()];
        let values = head.into_iter().chain(also.iter().map(|&s| s.into()));
        let rows = stmt.query_map(params_from_iter(values), |r| {
            let kind: String = r.get(3)?;
            Ok(GalleryChange {
                seq: r.get(0)?,
                tenant_id: r.get(1)?,
                face_id: r.get(2)?,
                kind: ChangeKind::parse(&kind).unwrap_or(ChangeKind::Purge),
                vector: r.get::<_, Option<Vec<u8>>>(4)?.map(|b| vector_from(&b)),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn gallery_position(&self, before_ms: i64) -> Result<i64> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM gallery_changes WHERE at_ms < ?1",
            [before_ms],
            |r| r.get(0),
        )?)
    }

    fn prune_gallery_changes(&self, before_ms: i64) -> Result<usize> {
        Ok(self
            .conn()
            .execute("DELETE FROM gallery_changes WHERE at_ms < ?1", [before_ms])?)
    }
}
