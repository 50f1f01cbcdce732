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
