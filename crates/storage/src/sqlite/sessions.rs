//! SQLite implementation of [`SessionStore`].

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, conflict_or, vector_bytes, vector_from};
use crate::sessions::{Attempt, Frame, NewSession, Session, SessionResult, SessionState, SessionStore};
use crate::{Result, StoreError, Timestamp};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, Tenant};

    fn store() -> SqliteStore {
        let s = SqliteStore::in_memory().expect("db");
        for t in ["t1", "t2"] {
            s.create_tenant(&Tenant {
                id: t.into(),
                name: t.into(),
                created_at: 0,
            })
            .expect("tenant");
        }
        s
    }

    fn new_session(id: &str, expires_at: Timestamp) -> NewSession {
        NewSession {
            id: id.into(),
            tenant_id: "t1".into(),
            client_id: "c1".into(),
            created_at: 0,
            expires_at,
            max_attempts: 2,
            minimum_match_level: 3,
            sealed_id_photo: vec![1, 2, 3],
            model_version: "m".into(),
            id_template: vec![0.5, 0.5],
        }
    }

    fn attempt(number: u8) -> Attempt {
        Attempt {
            number,
            challenges: "TURN_LEFT,TURN_RIGHT".into(),
            light: "RED:300,CYAN:250".into(),
            camera: "FaceTime HD Camera".into(),
            nonce: "n".into(),
            started_at_ms: 1000,
            max_attempts: 2,
            minimum_match_level: 3,
        }
    }

    fn frame(seq: u32) -> Frame {
        Frame {
            seq,
            at_ms: u64::from(seq) * 200,
            sealed_image: vec![9; 10],
            sealed_observation: vec![8; 10],
        }
    }

    #[test]
    fn a_session_runs_attempts_and_completes_once() {
        let s = store();
        s.create_session(&new_session("s1", 600)).expect("create");
        assert!(s.start_attempt("s1", &attempt(1)).expect("start"));
        assert!(s.add_frame("s1", 1, &frame(0)).expect("frame"));
        assert!(!s.add_frame("s1", 2, &frame(1)).expect("stale attempt"));
        assert_eq!(s.frames("s1", 1).expect("frames").len(), 1);
        assert_eq!(s.frame_image("s1", 1, 0).expect("image"), Some(vec![9; 10]));
        s.fail_attempt("s1", 1, false).expect("fail");
        let after = s.session("s1").expect("session");
        assert_eq!(
            (after.attempts_used, after.state, after.attempt),
            (1, SessionState::Open, None)
        );
        assert_eq!(s.count_frames("s1").expect("count"), 0);
        assert!(s.start_attempt("s1", &attempt(2)).expect("start"));
        s.add_frame("s1", 2, &frame(0)).expect("frame");
        let result = SessionResult {
            jws: "a.b.c".into(),
            audit_image_id: "img1".into(),
            sealed_audit_image: vec![7; 5],
            completed_at: 10,
            keep_until: 100,
        };
        assert!(s.complete_session("s1", 2, &result).expect("complete"));
        assert!(!s.complete_session("s1", 2, &result).expect("only once"));
        assert!(!s.start_attempt("s1", &attempt(3)).expect("closed"));
        let done = s.session("s1").expect("session");
        assert_eq!(done.state, SessionState::Completed);
        assert_eq!(done.result.as_deref(), Some("a.b.c"));
        assert_eq!(s.count_frames("s1").expect("count"), 0);
        assert_eq!(
            s.audit_image("t1", "img1").expect("img"),
            Some(("s1".to_string(), vec![7; 5]))
        );
        assert_eq!(s.audit_image("t2", "img1").expect("other tenant"), None);
    }

    #[test]
    fn the_sweeper_deletes_expired_sessions_with_their_frames() {
        let s = store();
        s.create_session(&new_session("old", 50)).expect("create");
        s.create_session(&new_session("new", 500)).expect("create");
        s.start_attempt("old", &attempt(1)).expect("start");
        s.add_frame("old", 1, &frame(0)).expect("frame");
        assert_eq!(s.sweep_sessions(100).expect("sweep"), 1);
        assert!(matches!(s.session("old"), Err(StoreError::NotFound(_))));
        assert_eq!(s.count_frames("old").expect("count"), 0);
        assert!(s.session("new").is_ok());
        assert!(!s.delete_session("t2", "new").expect("other tenant"));
        assert!(s.delete_session("t1", "new").expect("delete"));
    }

    #[test]
    fn origins_are_per_tenant() {
        let s = store();
        s.add_origin("t1", "app.example.com").expect("add");
        s.add_origin("t2", "*.example.org").expect("add");
        assert!(matches!(
            s.add_origin("t1", "app.example.com"),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.origins(Some("t1")).expect("list").len(), 1);
        assert_eq!(s.origins(None).expect("all").len(), 2);
        assert!(s.remove_origin("t1", "app.example.com").expect("remove"));
        assert!(!s.remove_origin("t1", "app.example.com").expect("gone"));
    }
}
