//! Access tokens: ES256 JWTs with a `kid`; session results: JWS signed
//! with RS256 by default.
//!
//! Verification reads the header only to find the key; the algorithm is
//! pinned to ES256 (so `alg: none` and HS/RS confusion fail), and exp, nbf,
//! iss and aud are required and checked. Each kind of token has its own
//! `typ` (RFC 8725 §3.11), and a token is accepted only as its own kind:
//! `at+jwt` for access tokens (RFC 9068), `sdk+jwt` for a session's SDK
//! token, `JWT` for results (as uqudo's).

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::{ALGORITHM, KeyRing};
use crate::permissions::Permission;

/// Issuer, audience and lifetime of access tokens, and the algorithm of
/// session results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    pub issuer: String,
    pub audience: String,
    /// Seconds.
    pub ttl: i64,
    /// RS256 (the default, as uqudo's results) or ES256.
    pub result_algorithm: Algorithm,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            issuer: "facegate".into(),
            audience: "facegate-api".into(),
            ttl: 1800,
            result_algorithm: Algorithm::RS256,
        }
    }
}

/// The `typ` of an access token (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";
/// The `typ` of a session's SDK token.
pub const SDK_TYP: &str = "sdk+jwt";
/// The `typ` of a session result.
pub const RESULT_TYP: &str = "JWT";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The client id.
    pub sub: String,
    /// The client id again, under uqudo's (and RFC 9068's) name for it.
    #[serde(default)]
    pub client_id: String,
    pub aud: String,
    pub tenant: String,
    /// Space-separated permissions.
    pub scope: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    /// Set on a session's capture token: the one session it may act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// The scope of an SDK token: one session's capture endpoints only. It is
/// not a [`Permission`], so no client can be granted it.
pub const CAPTURE_SCOPE: &str = "face:session:capture";

impl Claims {
    pub fn has(&self, permission: Permission) -> bool {
        self.scope.split(' ').any(|s| s == permission.as_str())
    }

    /// Whether this token may drive the capture of session `sid`: a capture
    /// token for exactly that session.
    pub fn captures(&self, sid: &str) -> bool {
        self.scope == CAPTURE_SCOPE && self.sid.as_deref() == Some(sid)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token is not of the kind accepted here")]
    WrongType,
    #[error("the token's signing key is unknown or retired")]
    UnknownKey,
    #[error("the token is expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("no signing key is available")]
    NoSigningKey,
    #[error("signing failed")]
    Signing,
    #[error("the operating system's random source failed")]
    Random,
}

/// Signs a token for a client.
pub fn issue(
    ring: &KeyRing,
    config: &TokenConfig,
    client_id: &str,
    tenant_id: &str,
    permissions: &[Permission],
) -> Result<(String, Claims), TokenError> {
    let now = crate::now();
    let claims = claims(
        config,
        client_id,
        tenant_id,
        Permission::scope(permissions),
        now + config.ttl,
        None,
    )?;
    Ok((sign_typed(ring, ALGORITHM, ACCESS_TYP, &claims)?, claims))
}

/// Signs a capture token for one session, valid until `expires_at` (or
/// the token lifetime, whichever is sooner).
pub fn issue_capture(
    ring: &KeyRing,
    config: &TokenConfig,
    client_id: &str,
    tenant_id: &str,
    session_id: &str,
    expires_at: i64,
) -> Result<(String, Claims), TokenError> {
    let exp = expires_at.min(crate::now() + config.ttl);
    let claims = claims(
        config,
        client_id,
        tenant_id,
        CAPTURE_SCOPE.into(),
        exp,
        Some(session_id.into()),
    )?;
    Ok((sign_typed(ring, ALGORITHM, SDK_TYP, &claims)?, claims))
}

/// The claims of a token issued now.
fn claims(
    config: &TokenConfig,
    client_id: &str,
    tenant_id: &str,
    scope: String,
    exp: i64,
    sid: Option<String>,
) -> Result<Claims, TokenError> {
    let now = crate::now();
    Ok(Claims {
        iss: config.issuer.clone(),
        sub: client_id.into(),
        client_id: client_id.into(),
        aud: config.audience.clone(),
        tenant: tenant_id.into(),
        scope,
        iat: now,
        nbf: now,
        exp,
        jti: crate::secrets::new_id("").map_err(|_| TokenError::Random)?,
        sid,
    })
}

/// Signs a session's result as a compact JWS (`typ` JWT) with the ring's
/// current key of the configured result algorithm, with its `kid`.
pub fn sign_result(ring: &KeyRing, config: &TokenConfig, claims: &impl Serialize) -> Result<String, TokenError> {
    sign_typed(ring, config.result_algorithm, RESULT_TYP, claims)
}

/// Signs `claims` with the current key of `algorithm`, as a `typ` token.
fn sign_typed(ring: &KeyRing, algorithm: Algorithm, typ: &str, claims: &impl Serialize) -> Result<String, TokenError> {
    let key = ring.signing_key(algorithm).ok_or(TokenError::NoSigningKey)?;
    let mut header = Header::new(algorithm);
    header.kid = Some(key.kid.clone());
    header.typ = Some(typ.into());
    jsonwebtoken::encode(&header, claims, key.encoding()).map_err(|_| TokenError::Signing)
}

/// Verifies an access token or an SDK token and returns its claims. The
/// `typ` must be the one of the kind its scope says it is, so that neither
/// passes for the other, and a result passes for neither.
pub fn verify(ring: &KeyRing, config: &TokenConfig, token: &str) -> Result<Claims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != ALGORITHM {
        return Err(TokenError::Algorithm);
    }
    let typ = header.typ.ok_or(TokenError::WrongType)?;
    if typ != ACCESS_TYP && typ != SDK_TYP {
        return Err(TokenError::WrongType);
    }
    let kid = header.kid.ok_or(TokenError::UnknownKey)?;
    let key = ring
        .verification_key(&kid, crate::now(), config.ttl)
        .ok_or(TokenError::UnknownKey)?;
    let mut validation = Validation::new(ALGORITHM);
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&[&config.audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = 30;
    let claims = jsonwebtoken::decode::<Claims>(token, key.decoding(), &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            kind => TokenError::Invalid(format!("{kind:?}")),
        })?;
    let expected = if claims.scope == CAPTURE_SCOPE {
        SDK_TYP
    } else {
        ACCESS_TYP
    };
    if typ != expected {
        return Err(TokenError::WrongType);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use facegate_storage::SqliteStore;

    fn ring() -> (tempfile::TempDir, SqliteStore, KeyRing) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::in_memory().expect("store");
        let master = facegate_storage::Cipher::new(&[5u8; 32]).expect("master");
        let ring = KeyRing::ensure(&store, &master, None).expect("ring");
        (dir, store, ring)
    }

    #[test]
    fn issued_tokens_verify_with_their_claims() {
        let (_dir, _store, ring) = ring();
        let config = TokenConfig::default();
        let (token, claims) = issue(&ring, &config, "c1", "t1", &[Permission::FaceMatch]).expect("issues");
        let verified = verify(&ring, &config, &token).expect("verifies");
        assert_eq!(verified, claims);
        assert!(verified.has(Permission::FaceMatch) && !verified.has(Permission::FaceSearch));
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.alg, ALGORITHM);
        assert!(header.kid.is_some());
    }

    #[test]
    fn rejects_forgeries_and_wrong_audiences() {
        let (_dir, _store, ring) = ring();
        let config = TokenConfig::default();
        let (token, _) = issue(&ring, &config, "c1", "t1", &[Permission::FaceMatch]).expect("issues");
        let parts: Vec<&str> = token.split('.').collect();
        // alg: none with the same payload and no signature.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert!(matches!(
            verify(&ring, &config, &none),
            Err(TokenError::Malformed | TokenError::Algorithm)
        ));
        // HS256 signed with the public key as an HMAC secret.
        let hs = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            parts[1],
            parts[2]
        );
        assert_eq!(verify(&ring, &config, &hs), Err(TokenError::Algorithm));
        // A key from another deployment.
        let (_d2, _s2, other) = self::ring();
        let (foreign, _) = issue(&other, &config, "c1", "t1", &[]).expect("issues");
        assert_eq!(verify(&ring, &config, &foreign), Err(TokenError::UnknownKey));
        let other_audience = TokenConfig {
            audience: "elsewhere".into(),
            ..TokenConfig::default()
        };
        assert!(matches!(
            verify(&ring, &other_audience, &token),
            Err(TokenError::Invalid(_))
        ));
        let other_issuer = TokenConfig {
            issuer: "evil".into(),
            ..TokenConfig::default()
        };
        assert!(matches!(
            verify(&ring, &other_issuer, &token),
            Err(TokenError::Invalid(_))
        ));
        assert_eq!(verify(&ring, &config, "garbage"), Err(TokenError::Malformed));
    }

    #[test]
    fn each_kind_of_token_is_accepted_only_as_itself() {
        let (_dir, _store, ring) = ring();
        let config = TokenConfig::default();
        let (access, access_claims) = issue(&ring, &config, "c1", "t1", &[Permission::FaceMatch]).expect("issues");
        let (sdk, sdk_claims) = issue_capture(&ring, &config, "c1", "t1", "s1", crate::now() + 600).expect("issues");
        let typ = |t: &str| jsonwebtoken::decode_header(t).expect("header").typ;
        assert_eq!(typ(&access).as_deref(), Some(ACCESS_TYP));
        assert_eq!(typ(&sdk).as_deref(), Some(SDK_TYP));
        assert!(verify(&ring, &config, &access).is_ok() && verify(&ring, &config, &sdk).is_ok());
        // The same claims under the other kind's typ, signed with the real key.
        let swapped_access = sign_typed(&ring, ALGORITHM, SDK_TYP, &access_claims).expect("signs");
        let swapped_sdk = sign_typed(&ring, ALGORITHM, ACCESS_TYP, &sdk_claims).expect("signs");
        let untyped = sign_typed(&ring, ALGORITHM, "", &access_claims).expect("signs");
        for token in [&swapped_access, &swapped_sdk, &untyped] {
            assert_eq!(verify(&ring, &config, token), Err(TokenError::WrongType));
        }
        // A result, even one signed with ES256 and carrying a token's claims.
        let result = sign_result(&ring, &config, &access_claims).expect("signs");
        let header = jsonwebtoken::decode_header(&result).expect("header");
        assert_eq!(
            (header.alg, header.typ.as_deref()),
            (Algorithm::RS256, Some(RESULT_TYP))
        );
        assert_eq!(verify(&ring, &config, &result), Err(TokenError::Algorithm));
        let es_config = TokenConfig {
            result_algorithm: ALGORITHM,
            ..TokenConfig::default()
        };
        let es_result = sign_result(&ring, &es_config, &access_claims).expect("signs");
        assert_eq!(verify(&ring, &config, &es_result), Err(TokenError::WrongType));
    }

    #[test]
    fn expired_tokens_fail() {
        let (_dir, _store, ring) = ring();
        let past = TokenConfig {
            ttl: -120,
            ..TokenConfig::default()
        };
        let (token, _) = issue(&ring, &past, "c1", "t1", &[]).expect("issues");
        assert_eq!(verify(&ring, &TokenConfig::default(), &token), Err(TokenError::Expired));
    }
}
