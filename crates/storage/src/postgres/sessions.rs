//! PostgreSQL implementation of [`SessionStore`]. Frames of one session
//! may arrive through different nodes: every step is one statement or one
//! transaction whose `WHERE` re-checks the session's state, so two nodes
//! racing to finish the same attempt cannot both win.

use postgres::Row;

use super::{PostgresStore, conflict_or, count, rows};
use crate::sessions::{Attempt, Frame, NewSession, Session, SessionResult, SessionState, SessionStore};
use crate::{Result, StoreError, Timestamp};
use crate::{vector_bytes, vector_from};

const SESSION_COLUMNS: &str = "id, tenant_id, client_id, created_at, expires_at, max_attempts, minimum_match_level,
    attempts_used, state, model_version, id_template, attempt_number, attempt_challenges, attempt_nonce,
    attempt_started_ms, attempt_max, attempt_level, result, audit_image_id, keep_until, attempt_light, attempt_camera";

/// SMALLINT columns hold u8 values only this module wrote.
fn small(r: &Row, i: usize) -> u8 {
    u8::try_from(r.get::<_, i16>(i)).unwrap_or(0)
}

fn session_row(r: &Row) -> Session {
    let state: String = r.get(8);
    let attempt = r.get::<_, Option<i16>>(11).map(|number| Attempt {
        number: u8::try_from(number).unwrap_or(0),
        challenges: r.get(12),
        light: r.get::<_, Option<String>>(20).unwrap_or_default(),
        camera: r.get::<_, Option<String>>(21).unwrap_or_default(),
        nonce: r.get(13),
        started_at_ms: r.get(14),
        max_attempts: small(r, 15),
        minimum_match_level: small(r, 16),
    });
    Session {
        id: r.get(0),
        tenant_id: r.get(1),
        client_id: r.get(2),
        created_at: r.get(3),
        expires_at: r.get(4),
        max_attempts: small(r, 5),
        minimum_match_level: small(r, 6),
        attempts_used: small(r, 7),
        state: SessionState::parse(&state).unwrap_or(SessionState::Invalidated),
        model_version: r.get(9),
        id_template: vector_from(r.get(10)),
        attempt,
        result: r.get(17),
        audit_image_id: r.get(18),
        keep_until: r.get(19),
    }
}

impl SessionStore for PostgresStore {
    fn create_session(&self, s: &NewSession) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO sessions (id, tenant_id, client_id, created_at, expires_at, max_attempts,
                 minimum_match_level, attempts_used, state, id_photo, model_version, id_template)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 'open', $8, $9, $10)",
                &[
                    &s.id,
                    &s.tenant_id,
                    &s.client_id,
                    &s.created_at,
                    &s.expires_at,
                    &i16::from(s.max_attempts),
                    &i16::from(s.minimum_match_level),
                    &s.sealed_id_photo,
                    &s.model_version,
                    &vector_bytes(&s.id_template),
                ],
            )
            .map_err(|e| conflict_or(e, "session"))?;
        Ok(())
    }

    fn session(&self, id: &str) -> Result<Session> {
        self.conn()?
            .query_opt(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"), &[&id])?
            .map(|r| session_row(&r))
            .ok_or(StoreError::NotFound("session"))
    }

    fn start_attempt(&self, session_id: &str, a: &Attempt) -> Result<bool> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        tx.execute("DELETE FROM session_frames WHERE session_id = $1", &[&session_id])?;
        let changed = tx.execute(
            "UPDATE sessions SET attempt_number = $2, attempt_challenges = $3, attempt_nonce = $4,
             attempt_started_ms = $5, attempt_max = $6, attempt_level = $7, attempt_light = $8, attempt_camera = $9
             WHERE id = $1 AND state = 'open'",
            &[
                &session_id,
                &i16::from(a.number),
                &a.challenges,
                &a.nonce,
                &a.started_at_ms,
                &i16::from(a.max_attempts),
                &i16::from(a.minimum_match_level),
                &a.light,
                &a.camera,
            ],
        )?;
        tx.commit()?;
        Ok(changed == 1)
    }

    fn add_frame(&self, session_id: &str, attempt: u8, f: &Frame) -> Result<bool> {
        // One statement: the frame goes in only while the attempt is the
        // session's current one, whichever node finishes or restarts it.
        let changed = self
            .conn()?
            .execute(
                "INSERT INTO session_frames (session_id, attempt, seq, at_ms, image, observation)
                 SELECT $1, $2, $3, $4, $5, $6 FROM sessions
                 WHERE id = $1 AND state = 'open' AND attempt_number = $2",
                &[
                    &session_id,
                    &i16::from(attempt),
                    &i64::from(f.seq),
                    &i64::try_from(f.at_ms).unwrap_or(i64::MAX),
                    &f.sealed_image,
                    &f.sealed_observation,
                ],
            )
            .map_err(|e| conflict_or(e, "frame"))?;
        Ok(changed == 1)
    }

    fn frames(&self, session_id: &str, attempt: u8) -> Result<Vec<Frame>> {
        let rows = self.conn()?.query(
            "SELECT seq, at_ms, observation FROM session_frames
             WHERE session_id = $1 AND attempt = $2 ORDER BY seq",
            &[&session_id, &i16::from(attempt)],
        )?;
        Ok(rows
            .iter()
            .map(|r| Frame {
                seq: u32::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                at_ms: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                sealed_image: Vec::new(),
                sealed_observation: r.get(2),
            })
            .collect())
    }

    fn frame_image(&self, session_id: &str, attempt: u8, seq: u32) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT image FROM session_frames WHERE session_id = $1 AND attempt = $2 AND seq = $3",
                &[&session_id, &i16::from(attempt), &i64::from(seq)],
            )?
            .map(|r| r.get(0)))
    }

    fn fail_attempt(&self, session_id: &str, attempt: u8, invalidate: bool) -> Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        tx.execute("DELETE FROM session_frames WHERE session_id = $1", &[&session_id])?;
        let state = if invalidate { "invalidated" } else { "open" };
        tx.execute(
            "UPDATE sessions SET attempts_used = attempts_used + 1, attempt_number = NULL, state = $3,
             id_photo = CASE WHEN $3 = 'open' THEN id_photo ELSE NULL END
             WHERE id = $1 AND attempt_number = $2 AND state = 'open'",
            &[&session_id, &i16::from(attempt), &state],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn complete_session(&self, session_id: &str, attempt: u8, r: &SessionResult) -> Result<bool> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let changed = tx.execute(
            "UPDATE sessions SET state = 'completed', attempts_used = attempts_used + 1, attempt_number = NULL,
             id_photo = NULL, result = $3, audit_image_id = $4, audit_image = $5, completed_at = $6, keep_until = $7
             WHERE id = $1 AND attempt_number = $2 AND state = 'open'",
            &[
                &session_id,
                &i16::from(attempt),
                &r.jws,
                &r.audit_image_id,
                &r.sealed_audit_image,
                &r.completed_at,
                &r.keep_until,
            ],
        )?;
        tx.execute("DELETE FROM session_frames WHERE session_id = $1", &[&session_id])?;
        tx.commit()?;
        Ok(changed == 1)
    }

    fn audit_image(&self, tenant_id: &str, image_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT id, audit_image FROM sessions
                 WHERE tenant_id = $1 AND audit_image_id = $2 AND audit_image IS NOT NULL",
                &[&tenant_id, &image_id],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn delete_session(&self, tenant_id: &str, session_id: &str) -> Result<bool> {
        let changed = self.conn()?.execute(
            "DELETE FROM sessions WHERE tenant_id = $1 AND id = $2",
            &[&tenant_id, &session_id],
        )?;
        Ok(changed == 1)
    }

    fn sweep_sessions(&self, now: Timestamp) -> Result<usize> {
        let n = self.conn()?.execute(
            "DELETE FROM sessions WHERE (state != 'completed' AND expires_at <= $1)
             OR (state = 'completed' AND keep_until <= $1)",
            &[&now],
        )?;
        Ok(rows(n))
    }

    fn count_frames(&self, session_id: &str) -> Result<usize> {
        let n: i64 = self
            .conn()?
            .query_one(
                "SELECT COUNT(*) FROM session_frames WHERE session_id = $1",
                &[&session_id],
            )?
            .get(0);
        Ok(count(n))
    }

    fn add_origin(&self, tenant_id: &str, pattern: &str) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO tenant_origins (tenant_id, pattern) VALUES ($1, $2)",
                &[&tenant_id, &pattern],
            )
            .map_err(|e| conflict_or(e, "origin"))?;
        Ok(())
    }

    fn remove_origin(&self, tenant_id: &str, pattern: &str) -> Result<bool> {
        let changed = self.conn()?.execute(
            "DELETE FROM tenant_origins WHERE tenant_id = $1 AND pattern = $2",
            &[&tenant_id, &pattern],
        )?;
        Ok(changed == 1)
    }

    fn origins(&self, tenant_id: Option<&str>) -> Result<Vec<(String, String)>> {
        let rows = self.conn()?.query(
            "SELECT tenant_id, pattern FROM tenant_origins WHERE $1::TEXT IS NULL OR tenant_id = $1
             ORDER BY tenant_id, pattern",
            &[&tenant_id],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
