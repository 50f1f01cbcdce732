//! TLS to PostgreSQL: a real server that refuses TCP without TLS, with a
//! certificate from a test CA, and every `sslmode` a URL can ask for.

use std::path::Path;

use facegate_storage::{PostgresOptions, PostgresStore, Store, Tenant};
use facegate_testdb::{Server, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// The certificate (PEM) of a CA called `name`, and a server certificate
/// for `names` that it signed, with the server's key.
fn authority(name: &str, names: &[&str]) -> (String, TlsFiles) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, name);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("server key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .expect("server params")
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let files = TlsFiles {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    (ca.pem(), files)
}

/// `url` with `host` for 127.0.0.1 and the query `query`.
fn with(url: &str, host: &str, query: &str) -> String {
    format!("{}?{query}", url.replacen("127.0.0.1", host, 1))
}

/// Opens the store at `url`, migrates it and writes through it.
fn open_and_write(url: &str) -> Result<(), String> {
    let store = PostgresStore::open_unchecked(url, PostgresOptions::default()).map_err(|e| e.to_string())?;
    store.migrate().map_err(|e| e.to_string())?;
    let id = format!("t{}", store.tenants().map_err(|e| e.to_string())?.len());
    let tenant = Tenant {
        name: id.clone(),
        id,
        created_at: 1,
    };
    store.create_tenant(&tenant).map_err(|e| e.to_string())
}

fn refused(url: &str) -> String {
    match open_and_write(url) {
        Ok(()) => panic!("{url} connected"),
        Err(e) => {
            assert!(
                !e.contains(facegate_testdb::PASSWORD),
                "the error shows the password: {e}"
            );
            e
        }
    }
}

#[test]
fn every_sslmode_means_what_it_means_to_libpq() {
    // The certificate names localhost only, so 127.0.0.1 is a name it
    // does not hold.
    let (ca, files) = authority("facegate test CA", &["localhost"]);
    let Some(server) = Server::start_tls(&files) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).expect("ca");
    let (other_ca, _) = authority("another CA", &["localhost"]);
    let other_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_file, other_ca).expect("other ca");
    let root = |file: &Path| format!("sslrootcert={}", file.display());
    let url = server.database();

    // Encrypted without checking the certificate, as libpq does.
    open_and_write(&with(&url, "127.0.0.1", "sslmode=require")).expect("require");
    open_and_write(&with(&url, "127.0.0.1", "sslmode=prefer")).expect("prefer uses the TLS offered");
    // The chain, and with verify-full the name too.
    let ca_root = root(&ca_file);
    open_and_write(&with(&url, "localhost", &format!("sslmode=verify-full&{ca_root}"))).expect("verify-full");
    open_and_write(&with(&url, "127.0.0.1", &format!("sslmode=verify-ca&{ca_root}"))).expect("verify-ca");
    let misnamed = refused(&with(&url, "127.0.0.1", &format!("sslmode=verify-full&{ca_root}")));
    assert!(
        misnamed.contains("TLS connection to the database failed") && misnamed.contains("not valid for name"),
        "{misnamed}"
    );
    let untrusted = refused(&with(
        &url,
        "localhost",
        &format!("sslmode=verify-full&{}", root(&other_file)),
    ));
    assert!(untrusted.contains("UnknownIssuer"), "{untrusted}");
    // libpq checks the chain under `require` when it is given a root.
    let chain = refused(&with(
        &url,
        "localhost",
        &format!("sslmode=require&{}", root(&other_file)),
    ));
    assert!(chain.contains("UnknownIssuer"), "{chain}");
    // This server refuses TCP without TLS.
    let plain = refused(&with(&url, "127.0.0.1", "sslmode=disable"));
    assert!(plain.contains("pg_hba.conf"), "{plain}");
}

#[test]
fn a_server_without_tls_and_unusable_settings_are_refused_clearly() {
    let Some(server) = facegate_testdb::shared() else {
        return;
    };
    let url = server.database();
    let no_tls = refused(&with(&url, "127.0.0.1", "sslmode=require"));
    assert!(no_tls.contains("does not offer TLS"), "{no_tls}");
    let unknown = refused(&with(&url, "127.0.0.1", "sslmode=sometimes"));
    assert!(unknown.contains("sslmode=sometimes is not one of"), "{unknown}");
    let rootless = refused(&with(&url, "127.0.0.1", "sslmode=verify-full"));
    assert!(rootless.contains("need sslrootcert=FILE"), "{rootless}");
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("junk");
    let unreadable = refused(&with(
        &url,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", junk.display()),
    ));
    assert!(
        unreadable.contains("junk.pem") && unreadable.contains("no usable PEM certificate"),
        "{unreadable}"
    );
}
