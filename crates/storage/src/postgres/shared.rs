//! PostgreSQL implementation of [`SharedStore`]: several nodes contend
//! here, so every read-modify-write is one upsert statement.

use super::{PostgresStore, rows};
use crate::shared::{ChangeKind, FailureCount, GalleryChange, Reservation, SharedStore};
use crate::vector_from;
use crate::{Result, Timestamp};

impl SharedStore for PostgresStore {
    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn()?
            .query_opt("SELECT sealed FROM secrets WHERE name = $1", &[&name])?
            .map(|r| r.get(0)))
    }

    fn put_secret_once(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let mut conn = self.conn()?;
        conn.execute(
            "INSERT INTO secrets (name, sealed) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &sealed],
        )?;
        Ok(conn
            .query_one("SELECT sealed FROM secrets WHERE name = $1", &[&name])?
            .get(0))
    }

    fn holds_sealed_images(&self) -> Result<bool> {
        Ok(self
            .conn()?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM faces) OR EXISTS (SELECT 1 FROM sessions)",
                &[],
            )?
            .get(0))
    }

    fn reserve_attempt(&self, limits: &[(String, u32)], now: Timestamp, window: i64) -> Result<Reservation> {
        let keys: Vec<&str> = limits.iter().map(|(k, _)| k.as_str()).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        // Every key gets a row first: a row being inserted by another node
        // makes this wait for its commit, so two first attempts cannot both
        // read "no row". Then the rows are locked for the decision, always
        // in one order (sorted), so reservations never deadlock.
        tx.execute(
            "INSERT INTO auth_failures (key, count, pending, window_start)
             SELECT k, 0, 0, $2 FROM unnest($1::TEXT[]) AS k ON CONFLICT (key) DO NOTHING",
            &[&sorted, &now],
        )?;
        let rows = tx.query(
            "SELECT key, count, pending, window_start FROM auth_failures
             WHERE key = ANY($1) ORDER BY key FOR UPDATE",
            &[&sorted],
        )?;
        let found: std::collections::HashMap<String, FailureCount> = rows
            .iter()
            .map(|r| (r.get(0), failure_count(r.get(1), r.get(2), r.get(3))))
            .collect();
        let stored: Vec<Option<FailureCount>> = keys.iter().map(|k| found.get(*k).copied()).collect();
        let (reservation, written) = crate::shared::reserve(&stored, limits, now, window);
        if reservation.granted {
            let counts: Vec<i32> = written
                .iter()
                .map(|c| i32::try_from(c.count).unwrap_or(i32::MAX))
                .collect();
            let pending: Vec<i32> = written
                .iter()
                .map(|c| i32::try_from(c.pending).unwrap_or(i32::MAX))
                .collect();
            let starts: Vec<i64> = written.iter().map(|c| c.window_start).collect();
            tx.execute(
                "UPDATE auth_failures AS f SET count = n.count, pending = n.pending, window_start = n.start
                 FROM unnest($1::TEXT[], $2::INT[], $3::INT[], $4::BIGINT[]) AS n(key, count, pending, start)
                 WHERE f.key = n.key",
                &[&keys, &counts, &pending, &starts],
            )?;
        }
        tx.commit()?;
        Ok(reservation)
    }

    fn settle_attempt(&self, keys: &[String], failed: bool) -> Result<()> {
        let mut sorted = keys.to_vec();
        sorted.sort();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        // One key at a time, in the order reservations lock them.
        for key in &sorted {
            tx.execute(
                "UPDATE auth_failures SET pending = GREATEST(pending - 1, 0), count = count + $2
                 WHERE key = $1",
                &[key, &i32::from(failed)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn clear_failures(&self, key: &str) -> Result<()> {
        self.conn()?
            .execute("UPDATE auth_failures SET count = 0 WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn prune_failures(&self, before: Timestamp) -> Result<usize> {
        let n = self
            .conn()?
            .execute("DELETE FROM auth_failures WHERE window_start < $1", &[&before])?;
        Ok(rows(n))
    }

    fn acquire_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        let won = self.conn()?.query_opt(
            "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
             WHERE leases.holder = excluded.holder OR leases.until_ms <= $3
             RETURNING holder",
            &[&name, &holder, &now_ms, &until_ms],
        )?;
        Ok(won.is_some())
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.conn()?
            .execute("DELETE FROM leases WHERE name = $1 AND holder = $2", &[&name, &holder])?;
        Ok(())
    }

    fn gallery_changes(
        &self,
        after: i64,
        also: &[i64],
        model_version: &str,
        limit: usize,
    ) -> Result<Vec<GalleryChange>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.conn()?.query(
            "SELECT c.seq, c.tenant_id, c.face_id, c.kind, t.vector FROM gallery_changes c
             LEFT JOIN templates t ON t.face_id = c.face_id AND t.model_version = $2
             WHERE c.seq > $1 OR c.seq = ANY($4) ORDER BY c.seq LIMIT $3",
            &[&after, &model_version, &limit, &also],
        )?;
        Ok(rows
            .iter()
            .map(|r| GalleryChange {
                seq: r.get(0),
                tenant_id: r.get(1),
                face_id: r.get(2),
                kind: ChangeKind::parse(r.get(3)).unwrap_or(ChangeKind::Purge),
                vector: r.get::<_, Option<&[u8]>>(4).map(vector_from),
            })
            .collect())
    }

    fn gallery_position(&self, before_ms: i64) -> Result<i64> {
        Ok(self
            .conn()?
            .query_one(
                "SELECT COALESCE(MAX(seq), 0) FROM gallery_changes WHERE at_ms < $1",
                &[&before_ms],
            )?
            .get(0))
    }

    fn prune_gallery_changes(&self, before_ms: i64) -> Result<usize> {
        let n = self
            .conn()?
            .execute("DELETE FROM gallery_changes WHERE at_ms < $1", &[&before_ms])?;
        Ok(rows(n))
    }
}

fn failure_count(count: i32, pending: i32, window_start: Timestamp) -> FailureCount {
    FailureCount {
        count: u32::try_from(count).unwrap_or(0),
        pending: u32::try_from(pending).unwrap_or(0),
        window_start,
    }
}
