//! TLS to PostgreSQL, with libpq's meanings of `sslmode`.
//!
//! `tokio-postgres` knows `disable`, `prefer` and `require`, and leaves
//! checking the server to the TLS connector; it does not parse
//! `verify-ca`, `verify-full` or `sslrootcert`. So the URL's `sslmode` and
//! `sslrootcert` are read here and the rest goes to `postgres::Config`:
//!
//! | sslmode | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | not checked (as libpq) |
//! | `require` | always | not checked; with `sslrootcert`, its chain is (as libpq) |
//! | `verify-ca` | always | chain to `sslrootcert` |
//! | `verify-full` | always | chain to `sslrootcert` and the host name |
//!
//! `verify-ca` and `verify-full` need `sslrootcert=FILE` (PEM). The TLS
//! stack is rustls on ring: no system OpenSSL to install or patch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres::config::SslMode;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Result, StoreError};

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Nothing: the connection is encrypted against eavesdroppers, not
    /// against a server in the middle.
    Nothing,
    /// The chain to the root, not the name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// What the URL asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tls {
    pub mode: SslMode,
    pub check: Check,
    pub root: Option<PathBuf>,
}

fn config_error(message: impl Into<String>) -> StoreError {
    StoreError::Config(message.into())
}

/// Splits the TLS settings off a `postgres://` URL; returns the URL that
/// `postgres::Config` can parse and the settings. A key-value connection
/// string passes through with `postgres::Config`'s own `sslmode`.
pub(super) fn split(url: &str) -> Result<(String, Tls)> {
    let mut tls = Tls {
        mode: SslMode::Prefer,
        check: Check::Nothing,
        root: None,
    };
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let Some((base, query)) = url.split_once('?').filter(|_| is_url) else {
        return Ok((url.to_string(), tls));
    };
    let mut kept = Vec::new();
    let mut mode = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| config_error(format!("the database URL's {key} is not valid UTF-8")))?;
        match key {
            "sslmode" => mode = Some(decoded.into_owned()),
            "sslrootcert" => tls.root = Some(PathBuf::from(decoded.as_ref())),
            _ => kept.push(pair),
        }
    }
    (tls.mode, tls.check) = match mode.as_deref().unwrap_or("prefer") {
        "disable" => (SslMode::Disable, Check::Nothing),
        "prefer" => (SslMode::Prefer, Check::Nothing),
        // libpq checks the chain under `require` when a root is given.
        "require" if tls.root.is_some() => (SslMode::Require, Check::Chain),
        "require" => (SslMode::Require, Check::Nothing),
        "verify-ca" => (SslMode::Require, Check::Chain),
        "verify-full" => (SslMode::Require, Check::Full),
        other => {
            return Err(config_error(format!(
                "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            )));
        }
    };
    if tls.check != Check::Nothing && tls.root.is_none() {
        return Err(config_error(
            "sslmode=verify-ca and verify-full need sslrootcert=FILE (the PEM certificate of the CA that signed the database's)",
        ));
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, tls))
}

/// The connector for `tls`; with `sslmode=disable` it is never used.
pub(super) fn connector(tls: &Tls) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS set-up failed: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match (&tls.root, tls.check) {
        (Some(root), check) if check != Check::Nothing => {
            let roots = Arc::new(root_store(root)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| config_error(format!("{}: {e}", root.display())))?;
            Arc::new(Checked { webpki, check })
        }
        _ => Arc::new(Unchecked(provider.signature_verification_algorithms)),
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The certificates of a PEM file, as trust roots.
fn root_store(path: &Path) -> Result<RootCertStore> {
    let unreadable = |why: String| config_error(format!("sslrootcert {}: {why}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| unreadable(e.to_string()))?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(unreadable("holds no usable PEM certificate".into()));
    }
    Ok(store)
}

/// `verify-ca` and `verify-full`: webpki's checks, where `verify-ca`
/// forgives only a name that does not match.
#[derive(Debug)]
struct Checked {
    webpki: Arc<WebPkiServerVerifier>,
    check: Check,
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let verified = self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        match verified {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.check == Check::Chain => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root: any certificate, as libpq; the
/// handshake's signatures are still checked, so the session key is the one
/// the certificate's holder agreed.
#[derive(Debug)]
struct Unchecked(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_read_off_the_url() {
        let (rest, tls) =
            split("postgres://u:p@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3")
                .expect("valid");
        assert_eq!(rest, "postgres://u:p@h/db?connect_timeout=3");
        assert_eq!((tls.mode, tls.check), (SslMode::Require, Check::Full));
        assert_eq!(tls.root.as_deref(), Some(Path::new("/etc/ca.pem")));
        let (rest, tls) = split("postgres://u:p@h/db").expect("valid");
        assert_eq!((rest.as_str(), tls.mode), ("postgres://u:p@h/db", SslMode::Prefer));
        let (_, tls) = split("postgres://h/db?sslmode=require&sslrootcert=ca.pem").expect("valid");
        assert_eq!(tls.check, Check::Chain, "libpq checks the chain when given a root");
        let (_, tls) = split("postgres://h/db?sslmode=disable").expect("valid");
        assert_eq!(tls.mode, SslMode::Disable);
    }

    #[test]
    fn unknown_modes_and_unverifiable_settings_are_refused() {
        let err = split("postgres://h/db?sslmode=allow-anything").expect_err("refused");
        assert!(
            err.to_string().contains("sslmode=allow-anything is not one of"),
            "{err}"
        );
        let err = split("postgres://h/db?sslmode=verify-full").expect_err("refused");
        assert!(err.to_string().contains("need sslrootcert=FILE"), "{err}");
        let err = connector(&Tls {
            mode: SslMode::Require,
            check: Check::Full,
            root: Some("/nonexistent/ca.pem".into()),
        })
        .err()
        .expect("refused");
        assert!(err.to_string().contains("sslrootcert /nonexistent/ca.pem"), "{err}");
    }
}
