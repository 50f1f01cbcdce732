//! `facegate` on PostgreSQL from the command line: the schema is applied by
//! `facegate migrate` and checked by `serve`, the master key is required
//! and checked, and start-up errors say what failed without ever printing
//! the URL's password. Skips loudly without PostgreSQL.

mod support;

use std::process::{Command, Output};

use support::models_dir;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let data = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_facegate"));
    command
        .arg("--data-dir")
        .arg(data.path())
        .args(args)
        .env("FACEGATE_MODELS_DIR", models_dir())
        .env_remove("FACEGATE_DATABASE_URL")
        .env_remove("FACEGATE_MASTER_KEY")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("facegate runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `out` failed with `expected` in its error, and no password.
fn refused(out: &Output, expected: &str) {
    let text = stderr(out);
    assert!(!out.status.success(), "{expected}: it ran");
    assert!(text.contains(expected), "{expected}: {text}");
    assert!(
        !text.contains(facegate_testdb::PASSWORD) && !text.contains("hunter2"),
        "a password was printed: {text}"
    );
}

#[test]
fn serve_on_postgres_needs_the_schema_and_the_master_key_and_says_so() {
    let Some(server) = facegate_testdb::shared() else {
        eprintln!("SKIPPED serve_on_postgres_needs_the_schema_and_the_master_key_and_says_so: no PostgreSQL");
        return;
    };
    let url = server.database();
    let db = ["--database-url", url.as_str()];
    let serve = |env: &[(&str, &str)]| run(&[&db[..], &["serve", "--listen", "127.0.0.1:0"]].concat(), env);
    refused(&serve(&[]), "run `facegate migrate`");
    let migrated = run(&[&db[..], &["migrate"]].concat(), &[]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(String::from_utf8_lossy(&migrated.stdout).contains("from version 0 to"));
    let again = run(&[&db[..], &["migrate"]].concat(), &[]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));
    // Tenants need no key; anything sealed does.
    let tenant = run(&[&db[..], &["tenant", "create", "acme"]].concat(), &[]);
    assert!(tenant.status.success(), "{}", stderr(&tenant));
    refused(&serve(&[]), "needs the master key");
    let key_dir = tempfile::tempdir().expect("tempdir");
    let key_file = key_dir.path().join("master.key");
    std::fs::write(&key_file, [7u8; 32]).expect("key");
    let with_file = [
        &db[..],
        &["--master-key-file", key_file.to_str().expect("utf-8"), "keys", "rotate"],
    ]
    .concat();
    let rotated = run(&with_file, &[]);
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    // Another key must never open, nor replace, the first one's secrets.
    let other = "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=";
    refused(
        &serve(&[("FACEGATE_MASTER_KEY", other)]),
        "does not open this database's secrets",
    );
    refused(
        &serve(&[("FACEGATE_MASTER_KEY", "not base64!")]),
        "the master key is not valid base64",
    );
}

/// Faces sealed under a data key the database does not hold (a copy that
/// left the `secrets` table behind): `serve` refuses to start, and says what
/// to restore, rather than make a new key that would orphan every image.
#[test]
fn serve_refuses_sealed_faces_without_their_data_key() {
    use facegate_storage::{Location, NewFace, PostgresOptions, PostgresStore, Store, Template, Tenant};
    let Some(server) = facegate_testdb::shared() else {
        eprintln!("SKIPPED serve_refuses_sealed_faces_without_their_data_key: no PostgreSQL");
        return;
    };
    let url = server.database();
    let options = PostgresOptions::default();
    facegate_storage::migrate(&Location::Postgres {
        url: url.clone(),
        options,
    })
    .expect("migrate");
    let store = PostgresStore::open(&url, options).expect("open");
    let tenant = Tenant {
        id: "t1".into(),
        name: "acme".into(),
        created_at: 1,
    };
    store.create_tenant(&tenant).expect("tenant");
    let id = "00000000-0000-4000-8000-000000000001".to_string();
    let face = NewFace {
        id: id.clone(),
        tenant_id: tenant.id,
        created_at: 1,
        sealed_image: vec![1; 64],
        template: Template {
            face_id: id,
            model_version: "sface-2021dec".into(),
            vector: vec![0.25; 128],
        },
    };
    store.insert_face(&face).expect("face");
    drop(store);
    let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let out = run(
        &["--database-url", url.as_str(), "serve", "--listen", "127.0.0.1:0"],
        &[("FACEGATE_MASTER_KEY", key)],
    );
    refused(&out, "has no data key: restore its `secrets` table from a backup");
}

#[test]
fn a_database_url_that_cannot_work_is_refused_in_one_line() {
    let Some(server) = facegate_testdb::shared() else {
        eprintln!("SKIPPED a_database_url_that_cannot_work_is_refused_in_one_line: no PostgreSQL");
        return;
    };
    let wrong_password = server.url("postgres").replace(facegate_testdb::PASSWORD, "hunter2");
    let cases = [
        (
            "postgres://u:hunter2@127.0.0.1:notaport/x".to_string(),
            "not a valid postgres:// URL",
        ),
        ("postgres://u:hunter2@127.0.0.1:1/x".to_string(), "cannot be reached"),
        (wrong_password, "refused the credentials"),
        (server.url("no_such_database"), "does not exist"),
        // This test server speaks no TLS (crates/storage/tests/tls.rs has one that does).
        (
            format!("{}?sslmode=require", server.url("postgres")),
            "does not offer TLS",
        ),
        (
            format!("{}?sslmode=verify-full", server.url("postgres")),
            "need sslrootcert=FILE",
        ),
    ];
    for (url, expected) in cases {
        let out = run(
            &["serve", "--listen", "127.0.0.1:0"],
            &[("FACEGATE_DATABASE_URL", &url)],
        );
        refused(&out, expected);
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        assert_eq!(stderr(&out).trim().lines().count(), 1, "one line: {}", stderr(&out));
    }
}

#[test]
fn db_copy_moves_a_populated_sqlite_store_and_is_safe_to_rerun() {
    use facegate_server::admin::Admin;
    use facegate_server::at_rest::{DatabaseUrl, StorageConfig};
    use facegate_storage::{NewFace, NewSession, PostgresOptions, PostgresStore, Template};
    let Some(server) = facegate_testdb::shared() else {
        eprintln!("SKIPPED db_copy_moves_a_populated_sqlite_store_and_is_safe_to_rerun: no PostgreSQL");
        return;
    };
    // A populated embedded store: tenant, clients (one revoked), an origin,
    // two signing keys, gallery faces with sealed images, a session.
    let data = tempfile::tempdir().expect("tempdir");
    let admin = Admin::open_dir(data.path()).expect("admin");
    let tenant = admin.create_tenant("acme").expect("tenant");
    let (client, _, _) = admin.create_client("acme", "all").expect("client");
    let (gone, _, _) = admin.create_client("acme", "face:match").expect("client");
    admin.revoke_client(&gone.id).expect("revoke");
    admin.add_origin("acme", "app.example.com").expect("origin");
    admin.rotate_keys().expect("rotate");
    let data_key = admin.keys(None).expect("keys").data;
    let photo = std::fs::read(models_dir().join("samples").join("Female_40_1_1_1.jpg")).expect("sample");
    let ids: Vec<String> = (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for id in &ids {
        let face = NewFace {
            id: id.clone(),
            tenant_id: tenant.id.clone(),
            created_at: 1,
            sealed_image: data_key.seal(id, &photo).expect("seal"),
            template: Template {
                face_id: id.clone(),
                model_version: "sface-2021dec".into(),
                vector: vec![0.25; 128],
            },
        };
        admin.store().insert_face(&face).expect("face");
    }
    admin
        .store()
        .create_session(&NewSession {
            id: "s1".into(),
            tenant_id: tenant.id.clone(),
            client_id: client.id.clone(),
            created_at: 1,
            expires_at: i64::MAX,
            max_attempts: 3,
            minimum_match_level: 3,
            sealed_id_photo: data_key.seal("s1", &photo).expect("seal"),
            model_version: "sface-2021dec".into(),
            id_template: vec![0.5; 128],
        })
        .expect("session");
    let url = server.database();
    let copy = |extra: &[&str]| {
        let from = data.path().to_str().expect("utf-8");
        run(
            &[
                &["db", "copy", "--from", from, "--to", url.as_str(), "--json"][..],
                extra,
            ]
            .concat(),
            &[],
        )
    };
    let first = copy(&[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).expect("json");
    assert_eq!(report["verified"], true, "{report}");
    let added = |report: &serde_json::Value, table: &str| {
        report["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .find(|t| t["table"] == table)
            .expect(table)["added"]
            .clone()
    };
    assert_eq!(added(&report, "faces"), 3);
    // ES256 and RS256, first and rotated.
    assert_eq!(added(&report, "signing_keys"), 4);
    // Again: nothing added, everything verified.
    let again: serde_json::Value = serde_json::from_slice(&copy(&[]).stdout).expect("json");
    assert_eq!(
        (again["verified"].clone(), added(&again, "faces")),
        (serde_json::json!(true), serde_json::json!(0))
    );
    // PostgreSQL opens with the SQLite store's master key: the same keys,
    // and the copied images unseal.
    let mut storage = StorageConfig::sqlite(data.path());
    storage.database_url = Some(DatabaseUrl(url.clone()));
    storage.master_key_file = Some(data.path().join("master.key"));
    let pg = PostgresStore::open(&url, PostgresOptions::default()).expect("open");
    let keys = storage.unlock(&pg, None).expect("the same master key opens the copy");
    let copied = facegate_storage::Store::clients(&pg, None).expect("clients");
    assert_eq!(copied.len(), 2);
    assert!(copied.iter().any(|c| c.id == gone.id && c.revoked_at.is_some()));
    assert_eq!(
        facegate_storage::Store::templates(&pg, &tenant.id, "sface-2021dec")
            .expect("t")
            .len(),
        3
    );
    let session = facegate_storage::SessionStore::session(&pg, "s1").expect("session");
    assert_eq!(session.client_id, client.id);
    let pending =
        facegate_storage::Store::faces_without_template(&pg, &tenant.id, "another-model", 0, 10).expect("faces");
    let sealed = pending[0].sealed_image.as_deref().expect("image kept");
    assert_eq!(keys.data.open(&pending[0].id, sealed).expect("unseals"), photo);
    // A row changed in SQLite after the copy shows as a difference, and
    // the command fails rather than claim a faithful copy.
    admin.revoke_client(&client.id).expect("revoke");
    let changed = copy(&[]);
    assert!(!changed.status.success());
    let report: serde_json::Value = serde_json::from_slice(&changed.stdout).expect("json");
    let clients = report["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["table"] == "clients")
        .expect("clients")
        .clone();
    assert_eq!(clients["verified"], false, "{report}");
}
