//! The storage contract: every test here runs against SQLite and against a
//! real PostgreSQL server (started by `facegate-testdb`), so both backends
//! keep one behaviour.

use facegate_storage::shared::ChangeKind;
use facegate_storage::{
    Attempt, Client, Frame, Location, NewFace, NewSession, PostgresOptions, PostgresStore, SessionResult, SessionState,
    SigningKey, SqliteStore, Store, StoreError, Template, Tenant, Timestamp,
};

fn sqlite_store() -> Box<dyn Store> {
    Box::new(SqliteStore::in_memory().expect("sqlite"))
}

fn postgres_store() -> Option<Box<dyn Store>> {
    let url = facegate_testdb::shared()?.database();
    let options = PostgresOptions::default();
    let location = Location::Postgres {
        url: url.clone(),
        options,
    };
    facegate_storage::migrate(&location).expect("migrate");
    Some(Box::new(PostgresStore::open(&url, options).expect("open")))
}

/// Instantiates each contract test once per backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::sqlite_store().as_ref()) } )*
        }
        mod postgres {
            $( #[test] fn $name() { if let Some(s) = super::postgres_store() { super::$name(s.as_ref()) } } )*
        }
    };
}

contract!(
    tenants_and_clients_round_trip,
    signing_keys_retire_and_are_sealed_once,
    faces_keep_templates_after_image_delete_and_are_tenant_scoped,
    a_session_runs_attempts_and_completes_once,
    the_sweeper_deletes_expired_sessions_with_their_frames,
    origins_are_per_tenant,
    a_secret_is_stored_once,
    reservations_and_failures_count_per_key_within_a_window,
    parallel_reservations_never_pass_the_limit,
    a_lease_has_one_holder_until_it_lapses,
    the_gallery_log_records_inserts_and_purges_in_order,
);

fn tenant(id: &str, name: &str) -> Tenant {
    Tenant {
        id: id.into(),
        name: name.into(),
        created_at: 1,
    }
}

fn two_tenants(store: &dyn Store) {
    store.create_tenant(&tenant("t1", "t1")).expect("tenant");
    store.create_tenant(&tenant("t2", "t2")).expect("tenant");
}

fn client(id: &str, tenant_id: &str) -> Client {
    Client {
        id: id.into(),
        tenant_id: tenant_id.into(),
        secret_hash: "$argon2id$...".into(),
        permissions: vec!["face:match".into(), "face:search".into()],
        created_at: 2,
        revoked_at: None,
    }
}

fn tenants_and_clients_round_trip(store: &dyn Store) {
    store.create_tenant(&tenant("t1", "acme")).expect("creates");
    assert!(matches!(
        store.create_tenant(&tenant("t2", "acme")),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.find_tenant("acme").expect("by name").id, "t1");
    assert_eq!(store.find_tenant("t1").expect("by id").name, "acme");
    assert!(matches!(store.find_tenant("nope"), Err(StoreError::NotFound(_))));
    store.create_client(&client("c1", "t1")).expect("creates");
    assert!(
        store.create_client(&client("c2", "missing-tenant")).is_err(),
        "foreign key"
    );
    assert_eq!(
        store.client("c1").expect("found").permissions,
        vec!["face:match", "face:search"]
    );
    assert_eq!(store.clients(Some("t1")).expect("list").len(), 1);
    assert_eq!(store.clients(Some("t2")).expect("list").len(), 0);
    assert_eq!(store.clients(None).expect("list").len(), 1);
    store.revoke_client("c1", 99).expect("revokes");
    store.revoke_client("c1", 150).expect("idempotent");
    assert_eq!(store.client("c1").expect("found").revoked_at, Some(99));
    assert!(matches!(store.revoke_client("zz", 1), Err(StoreError::NotFound(_))));
    store.ping().expect("ping");
}

fn signing_keys_retire_and_are_sealed_once(store: &dyn Store) {
    for (kid, at, sealed, algorithm) in [
        ("a", 1, None, "ES256"),
        ("r", 1, None, "RS256"),
        ("b", 2, Some(vec![1u8, 2]), "ES256"),
    ] {
        let key = SigningKey {
            kid: kid.into(),
            algorithm: algorithm.into(),
            created_at: at,
            retired_at: None,
            sealed_private: sealed,
        };
        store.add_signing_key(&key).expect("adds");
    }
    store.retire_signing_keys_except("b", 10).expect("retires");
    let keys = store.signing_keys().expect("lists");
    assert_eq!(keys[0].kid, "b");
    assert_eq!(keys[0].retired_at, None);
    assert_eq!(keys[0].sealed_private, Some(vec![1, 2]));
    let retired = |kid: &str| keys.iter().find(|k| k.kid == kid).expect("listed").retired_at;
    assert_eq!(retired("a"), Some(10));
    assert_eq!(retired("r"), None, "a key of another algorithm stays active");
    store.seal_signing_key("a", &[7, 7]).expect("seals a legacy key");
    assert!(
        matches!(store.seal_signing_key("a", &[8]), Err(StoreError::NotFound(_))),
        "a sealed key is never overwritten"
    );
    let keys = store.signing_keys().expect("lists");
    let a = keys.iter().find(|k| k.kid == "a").expect("listed");
    assert_eq!(a.sealed_private, Some(vec![7, 7]));
}

fn face(id: &str, tenant: &str) -> NewFace {
    NewFace {
        id: id.into(),
        tenant_id: tenant.into(),
        created_at: 5,
        sealed_image: vec![1, 2, 3],
        template: Template {
            face_id: id.into(),
            model_version: "m1".into(),
            vector: vec![0.5, -0.25],
        },
    }
}

fn faces_keep_templates_after_image_delete_and_are_tenant_scoped(store: &dyn Store) {
    two_tenants(store);
    assert!(!store.holds_sealed_images().expect("empty"));
    store.insert_face(&face("f1", "t1")).expect("insert");
    assert!(store.holds_sealed_images().expect("a face's image"));
    store.insert_face(&face("f2", "t1")).expect("insert");
    assert!(matches!(
        store.insert_face(&face("f2", "t1")),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.templates("t1", "m1").expect("templates")[0].vector,
        vec![0.5, -0.25]
    );
    assert!(store.templates("t2", "m1").expect("templates").is_empty());
    assert!(
        !store.delete_face_image("t2", "f1", 9).expect("other tenant"),
        "another tenant's face is not found"
    );
    assert!(store.delete_face_image("t1", "f1", 9).expect("delete"));
    assert_eq!(store.face_state("t1", "f1").expect("state"), Some(false));
    assert_eq!(
        store.templates("t1", "m1").expect("templates").len(),
        2,
        "templates stay"
    );
    let pending = store.faces_without_template("t1", "m2", 0, 10).expect("pending");
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].sealed_image, None);
    let after_first = store
        .faces_without_template("t1", "m2", pending[0].cursor, 10)
        .expect("pending");
    assert_eq!(after_first.len(), 1, "the cursor resumes after a face");
    assert_eq!(store.count_faces_without_template("t1", "m2").expect("count"), 2);
    let template = Template {
        face_id: "f2".into(),
        model_version: "m2".into(),
        vector: vec![1.0],
    };
    store.put_template(&template).expect("put");
    store.put_template(&template).expect("put again replaces");
    assert_eq!(
        store.faces_without_template("t1", "m2", 0, 10).expect("pending").len(),
        1
    );
    let vectors = store
        .template_vectors("m2", &["f2".into(), "f1".into()])
        .expect("vectors");
    assert_eq!(vectors.len(), 1);
    assert!(!store.purge_face("t2", "f2").expect("other tenant"));
    assert!(store.purge_face("t1", "f2").expect("purge"));
    assert_eq!(store.face_state("t1", "f2").expect("state"), None);
    assert!(
        store
            .template_vectors("m2", &["f2".into()])
            .expect("vectors")
            .is_empty(),
        "templates cascade"
    );
    assert_eq!(store.tenant_model("t1").expect("model"), None);
    store.set_tenant_model("t1", "m2").expect("set");
    store.set_tenant_model("t1", "m3").expect("set");
    assert_eq!(store.tenant_model("t1").expect("model").as_deref(), Some("m3"));
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

fn a_session_runs_attempts_and_completes_once(s: &dyn Store) {
    two_tenants(s);
    s.create_session(&new_session("s1", 600)).expect("create");
    assert!(s.holds_sealed_images().expect("a session holds a sealed photo"));
    assert!(s.start_attempt("s1", &attempt(1)).expect("start"));
    assert_eq!(s.session("s1").expect("session").attempt, Some(attempt(1)));
    assert!(s.add_frame("s1", 1, &frame(0)).expect("frame"));
    assert!(!s.add_frame("s1", 2, &frame(1)).expect("stale attempt"));
    assert!(
        matches!(s.add_frame("s1", 1, &frame(0)), Err(StoreError::Conflict(_))),
        "a frame once"
    );
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

fn the_sweeper_deletes_expired_sessions_with_their_frames(s: &dyn Store) {
    two_tenants(s);
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

fn origins_are_per_tenant(s: &dyn Store) {
    two_tenants(s);
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

fn a_secret_is_stored_once(s: &dyn Store) {
    assert_eq!(s.secret("data-key").expect("read"), None);
    assert_eq!(s.put_secret_once("data-key", b"first").expect("put"), b"first");
    assert_eq!(
        s.put_secret_once("data-key", b"second").expect("put"),
        b"first",
        "the first writer wins"
    );
    assert_eq!(s.secret("data-key").expect("read").as_deref(), Some(&b"first"[..]));
}

fn reservations_and_failures_count_per_key_within_a_window(s: &dyn Store) {
    let limits = vec![("a:1".to_string(), 3), ("p:1:c".to_string(), 2)];
    let keys: Vec<String> = limits.iter().map(|(k, _)| k.clone()).collect();
    // (failures, in flight) of each key before the reservation, and whether it was granted.
    let reserve = |now| {
        let r = s.reserve_attempt(&limits, now, 60).expect("reserve");
        let counts: Vec<(u32, u32)> = r.counts.iter().map(|c| (c.count, c.pending)).collect();
        (r.granted, counts)
    };
    assert_eq!(reserve(100), (true, vec![(0, 0), (0, 0)]));
    assert_eq!(reserve(101), (true, vec![(0, 1), (0, 1)]));
    assert_eq!(
        reserve(102),
        (false, vec![(0, 2), (0, 2)]),
        "the pair's places are taken"
    );
    s.settle_attempt(&keys, true).expect("a failure");
    s.settle_attempt(&keys, false).expect("a success");
    assert_eq!(reserve(103), (true, vec![(1, 0), (1, 0)]));
    s.settle_attempt(&keys, true).expect("a failure");
    let refused = s.reserve_attempt(&limits, 104, 60).expect("reserve");
    assert!(!refused.granted);
    assert_eq!(refused.counts[1].count, 2, "two failures: the pair's limit");
    assert_eq!(refused.counts[1].window_start, 100, "in the window that began at 100");
    s.clear_failures("p:1:c").expect("clear");
    assert_eq!(
        reserve(105),
        (true, vec![(2, 0), (0, 0)]),
        "the address keeps its count"
    );
    s.settle_attempt(&keys, true).expect("a failure");
    assert_eq!(
        reserve(106),
        (false, vec![(3, 0), (1, 0)]),
        "the address is at its limit"
    );
    assert_eq!(reserve(160), (true, vec![(0, 0), (0, 0)]), "a new window");
    assert_eq!(s.prune_failures(161).expect("prune"), 2);
    assert_eq!(reserve(170), (true, vec![(0, 0), (0, 0)]));
}

/// Of 16 checks reserving at once under a limit of 5, exactly 5 go ahead:
/// the race a burst of parallel guesses would win against a count read
/// before any of them failed.
fn parallel_reservations_never_pass_the_limit(s: &dyn Store) {
    let limits = vec![("a:9".to_string(), 30), ("p:9:c".to_string(), 5)];
    let barrier = std::sync::Barrier::new(16);
    let granted = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    s.reserve_attempt(&limits, 100, 60).expect("reserve").granted
                })
            })
            .collect();
        racers
            .into_iter()
            .filter_map(|r| r.join().ok())
            .filter(|granted| *granted)
            .count()
    });
    assert_eq!(granted, 5);
}

fn a_lease_has_one_holder_until_it_lapses(s: &dyn Store) {
    assert!(s.acquire_lease("sweeper", "node-1", 1_000, 31_000).expect("take"));
    assert!(!s.acquire_lease("sweeper", "node-2", 2_000, 32_000).expect("held"));
    assert!(s.acquire_lease("sweeper", "node-1", 3_000, 33_000).expect("renew"));
    assert!(
        !s.acquire_lease("sweeper", "node-2", 32_999, 62_000)
            .expect("still held")
    );
    assert!(s.acquire_lease("sweeper", "node-2", 33_000, 63_000).expect("lapsed"));
    assert!(
        !s.acquire_lease("sweeper", "node-1", 34_000, 64_000)
            .expect("taken over")
    );
    s.release_lease("sweeper", "node-1").expect("not the holder: no effect");
    assert!(
        !s.acquire_lease("sweeper", "node-1", 34_000, 64_000)
            .expect("still node-2's")
    );
    s.release_lease("sweeper", "node-2").expect("release");
    assert!(s.acquire_lease("sweeper", "node-1", 35_000, 65_000).expect("free"));
}

fn the_gallery_log_records_inserts_and_purges_in_order(s: &dyn Store) {
    two_tenants(s);
    assert_eq!(s.gallery_position(i64::MAX).expect("empty"), 0);
    s.insert_faces(&[face("f1", "t1"), face("f2", "t2")]).expect("insert");
    assert!(
        matches!(
            s.insert_faces(&[face("f9", "t1"), face("f1", "t1")]),
            Err(StoreError::Conflict(_))
        ),
        "a batch with a taken id"
    );
    assert_eq!(s.face_state("t1", "f9").expect("state"), None, "all or nothing");
    s.insert_face(&face("f3", "t1")).expect("insert");
    assert!(s.delete_face_image("t1", "f1", 9).expect("image only: not in the log"));
    assert!(s.purge_face("t1", "f3").expect("purge"));
    assert!(!s.purge_face("t1", "f3").expect("again: nothing, and no entry"));
    let all = s.gallery_changes(0, &[], "m1", 100).expect("log");
    let summary: Vec<(&str, &str, ChangeKind, bool)> = all
        .iter()
        .map(|c| (c.tenant_id.as_str(), c.face_id.as_str(), c.kind, c.vector.is_some()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("t1", "f1", ChangeKind::Insert, true),
            ("t2", "f2", ChangeKind::Insert, true),
            ("t1", "f3", ChangeKind::Insert, false),
            ("t1", "f3", ChangeKind::Purge, false),
        ],
        "an insert whose face is gone carries no vector"
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(all[0].vector.as_deref(), Some(&[0.5, -0.25][..]));
    assert_eq!(s.gallery_position(i64::MAX).expect("head"), all[3].seq);
    assert_eq!(s.gallery_position(0).expect("nothing before 1970"), 0);
    let later = s.gallery_changes(all[1].seq, &[all[0].seq], "m1", 100).expect("log");
    assert_eq!(later.len(), 3, "after a position, plus the listed ones");
    assert_eq!(s.gallery_changes(0, &[], "m1", 2).expect("log").len(), 2, "limit");
    assert!(
        s.gallery_changes(0, &[], "other", 100)
            .expect("log")
            .iter()
            .all(|c| c.vector.is_none()),
        "vectors of the asked model only"
    );
    assert_eq!(s.prune_gallery_changes(0).expect("nothing so old"), 0);
    assert_eq!(s.prune_gallery_changes(i64::MAX).expect("prune all"), 4);
}

#[test]
fn postgres_refuses_a_schema_that_is_behind_and_migrates_once() {
    let Some(server) = facegate_testdb::shared() else {
        return;
    };
    let url = server.database();
    let options = PostgresOptions::default();
    let Err(err) = PostgresStore::open(&url, options) else {
        panic!("an empty database must be refused")
    };
    assert!(matches!(err, StoreError::SchemaBehind { found: 0, .. }), "{err}");
    assert!(err.to_string().contains("facegate migrate"), "{err}");
    let location = Location::Postgres {
        url: url.clone(),
        options,
    };
    let needed = facegate_storage::POSTGRES_SCHEMA_VERSION;
    assert_eq!(facegate_storage::migrate(&location).expect("migrate"), (0, needed));
    assert_eq!(facegate_storage::migrate(&location).expect("again"), (needed, needed));
    PostgresStore::open(&url, options).expect("now it opens");
}

#[test]
fn postgres_start_errors_say_what_failed_and_never_echo_the_url() {
    let Some(server) = facegate_testdb::shared() else {
        return;
    };
    let options = PostgresOptions::default();
    let cases = [
        (
            "postgres://x:hunter2@127.0.0.1:notaport/db".to_string(),
            "not a valid postgres:// URL",
        ),
        (
            server.url("postgres").replace(facegate_testdb::PASSWORD, "hunter2"),
            "refused the credentials",
        ),
        (server.url("no_such_db"), "does not exist"),
        ("postgres://x:hunter2@127.0.0.1:1/db".to_string(), "cannot be reached"),
    ];
    for (url, expected) in cases {
        let Err(err) = PostgresStore::open(&url, options) else {
            panic!("{expected}: opened")
        };
        let text = err.to_string();
        assert!(text.contains(expected), "{expected}: {text}");
        assert!(
            !text.contains("hunter2") && !text.contains(facegate_testdb::PASSWORD),
            "{text}"
        );
    }
}
