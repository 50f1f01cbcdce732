//! SQLite implementation of [`SessionStore`].

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, conflict_or};
use crate::sessions::{Attempt, Frame, NewSession, Session, SessionResult, SessionState, SessionStore};
use crate::{Result, StoreError, Timestamp};
use crate::{vector_bytes, vector_from};

const SESSION_COLUMNS: &str = "id, tenant_id, client_id, created_at, expires_at, max_attempts, minimum_match_level,
    attempts_used, state, model_version, id_template, attempt_number, attempt_challenges, attempt_nonce,
    attempt_started_ms, attempt_max, attempt_level, result, audit_image_id, keep_until, attempt_light, attempt_camera";

fn session_row(r: &rusqlite::Row) -> rusqlite::Result<Session> {
    let state: String = r.get(8)?;
    let attempt = match r.get::<_, Option<u8>>(11)? {
        Some(number) => Some(Attempt {
            number,
            challenges: r.get(12)?,
            light: r.get::<_, Option<String>>(20)?.unwrap_or_default(),
            camera: r.get::<_, Option<String>>(21)?.unwrap_or_default(),
            nonce: r.get(13)?,
            started_at_ms: r.get(14)?,
            max_attempts: r.get(15)?,
            minimum_match_level: r.get(16)?,
        }),
        None => None,
    };
    Ok(Session {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        client_id: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        max_attempts: r.get(5)?,
        minimum_match_level: r.get(6)?,
        attempts_used: r.get(7)?,
        // Only this module writes the column.
        state: SessionState::parse(&state).unwrap_or(SessionState::Invalidated),
        model_version: r.get(9)?,
        id_template: vector_from(&r.get::<_, Vec<u8>>(10)?),
        attempt,
        result: r.get(17)?,
        audit_image_id: r.get(18)?,
        keep_until: r.get(19)?,
    })
}

impl SessionStore for SqliteStore {
    fn create_session(&self, s: &NewSession) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO sessions (id, tenant_id, client_id, created_at, expires_at, max_attempts,
                 minimum_match_level, attempts_used, state, id_photo, model_version, id_template)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 'open', ?8, ?9, ?10)",
                params![
                    s.id,
                    s.tenant_id,
                    s.client_id,
                    s.created_at,
                    s.expires_at,
                    s.max_attempts,
                    s.minimum_match_level,
                    s.sealed_id_photo,
                    s.model_version,
                    vector_bytes(&s.id_template)
                ],
            )
            .map_err(|e| conflict_or(e, "session"))?;
        Ok(())
    }

    fn session(&self, id: &str) -> Result<Session> {
        self.conn()
            .query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"),
                [id],
                session_row,
            )
            .optional()?
            .ok_or(StoreError::NotFound("session"))
    }

    fn start_attempt(&self, session_id: &str, a: &Attempt) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM session_frames WHERE session_id = ?1", [session_id])?;
        let changed = tx.execute(
            "UPDATE sessions SET attempt_number = ?2, attempt_challenges = ?3, attempt_nonce = ?4,
             attempt_started_ms = ?5, attempt_max = ?6, attempt_level = ?7, attempt_light = ?8, attempt_camera = ?9
             WHERE id = ?1 AND state = 'open'",
            params![
                session_id,
                a.number,
                a.challenges,
                a.nonce,
                a.started_at_ms,
                a.max_attempts,
                a.minimum_match_level,
                a.light,
                a.camera
            ],
        )?;
        tx.commit()?;
        Ok(changed == 1)
    }

    fn add_frame(&self, session_id: &str, attempt: u8, f: &Frame) -> Result<bool> {
        let conn = self.conn();
        let current: Option<Option<u8>> = conn
            .query_row(
                "SELECT attempt_number FROM sessions WHERE id = ?1 AND state = 'open'",
                [session_id],
                |r| r.get(0),
            )
            .optional()?;
        if current != Some(Some(attempt)) {
            return Ok(false);
        }
        conn.execute(
            "INSERT INTO session_frames (session_id, attempt, seq, at_ms, image, observation)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                session_id,
                attempt,
                f.seq,
                i64::try_from(f.at_ms).unwrap_or(i64::MAX),
                f.sealed_image,
                f.sealed_observation
            ],
        )
        .map_err(|e| conflict_or(e, "frame"))?;
        Ok(true)
    }

    fn frames(&self, session_id: &str, attempt: u8) -> Result<Vec<Frame>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, at_ms, observation FROM session_frames
             WHERE session_id = ?1 AND attempt = ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![session_id, attempt], |r| {
            Ok(Frame {
                seq: r.get(0)?,
                at_ms: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                sealed_image: Vec::new(),
                sealed_observation: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn frame_image(&self, session_id: &str, attempt: u8, seq: u32) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT image FROM session_frames WHERE session_id = ?1 AND attempt = ?2 AND seq = ?3",
                params![session_id, attempt, seq],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn fail_attempt(&self, session_id: &str, attempt: u8, invalidate: bool) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM session_frames WHERE session_id = ?1", [session_id])?;
        let state = if invalidate { "invalidated" } else { "open" };
        tx.execute(
            "UPDATE sessions SET attempts_used = attempts_used + 1, attempt_number = NULL, state = ?3,
             id_photo = CASE WHEN ?3 = 'open' THEN id_photo ELSE NULL END
             WHERE id = ?1 AND attempt_number = ?2 AND state = 'open'",
            params![session_id, attempt, state],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn complete_session(&self, session_id: &str, attempt: u8, r: &SessionResult) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = tx.execute(
            "UPDATE sessions SET state = 'completed', attempts_used = attempts_used + 1, attempt_number = NULL,
             id_photo = NULL, result = ?3, audit_image_id = ?4, audit_image = ?5, completed_at = ?6, keep_until = ?7
             WHERE id = ?1 AND attempt_number = ?2 AND state = 'open'",
            params![
                session_id,
                attempt,
                r.jws,
                r.audit_image_id,
                r.sealed_audit_image,
                r.completed_at,
                r.keep_until
            ],
        )?;
        tx.execute("DELETE FROM session_frames WHERE session_id = ?1", [session_id])?;
        tx.commit()?;
        Ok(changed == 1)
    }

    fn audit_image(&self, tenant_id: &str, image_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, audit_image FROM sessions
                 WHERE tenant_id = ?1 AND audit_image_id = ?2 AND audit_image IS NOT NULL",
                [tenant_id, image_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn delete_session(&self, tenant_id: &str, session_id: &str) -> Result<bool> {
        let changed = self.conn().execute(
            "DELETE FROM sessions WHERE tenant_id = ?1 AND id = ?2",
            [tenant_id, session_id],
        )?;
        Ok(changed == 1)
    }

    fn sweep_sessions(&self, now: Timestamp) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM sessions WHERE (state != 'completed' AND expires_at <= ?1)
             OR (state = 'completed' AND keep_until <= ?1)",
            [now],
        )?)
    }

    fn count_frames(&self, session_id: &str) -> Result<usize> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM session_frames WHERE session_id = ?1",
            [session_id],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn add_origin(&self, tenant_id: &str, pattern: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO tenant_origins (tenant_id, pattern) VALUES (?1, ?2)",
                [tenant_id, pattern],
            )
            .map_err(|e| conflict_or(e, "origin"))?;
        Ok(())
    }

    fn remove_origin(&self, tenant_id: &str, pattern: &str) -> Result<bool> {
        let changed = self.conn().execute(
            "DELETE FROM tenant_origins WHERE tenant_id = ?1 AND pattern = ?2",
            [tenant_id, pattern],
        )?;
        Ok(changed == 1)
    }

    fn origins(&self, tenant_id: Option<&str>) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT tenant_id, pattern FROM tenant_origins WHERE ?1 IS NULL OR tenant_id = ?1
             ORDER BY tenant_id, pattern",
        )?;
        let rows = stmt.query_map([tenant_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
