//! The browser SDK (`/sdk/facegate.js`) and the operator demo (`/demo`,
//! only with `facegate serve --demo`).
//!
//! The demo creates sessions for a built-in `demo` tenant, so the page needs
//! no backend token: it only ever holds a session's capture token. Its
//! results are verified in the browser against the published JWKS.

use axum::extract::{Multipart, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use facegate_storage::{Client, StoreError, Tenant};

use crate::analysis::{Keep, analyze_bytes};
use crate::error::{ApiError, ErrorCode};
use crate::inference::Admitted;
use crate::routes::session::{CreateSessionResponse, multipart_request, new_session};
use crate::state::AppState;

const SDK: &str = include_str!("../../../../web/sdk/facegate.js");
const DEMO: &str = include_str!("../../../../web/demo/index.html");
const DEMO_TENANT: &str = "demo";
const DEMO_CLIENT: &str = "fgc_demo";

/// `GET /sdk/facegate.js`
pub async fn sdk() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
            // A public script, loaded as a module from customers' origins:
            // module scripts need CORS, and it carries no credentials.
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
        ],
        SDK,
    )
        .into_response()
}

fn demo_enabled(state: &AppState) -> Result<(), ApiError> {
    if state.config.demo {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::NotFound, "no such resource"))
    }
}

/// `GET /demo`
pub async fn page(State(state): State<AppState>) -> Result<Html<&'static str>, ApiError> {
    demo_enabled(&state)?;
    Ok(Html(DEMO))
}

/// Creates the demo tenant and its client once. The client's secret is
/// random and never shown: nobody can get a backend token for it.
fn ensure_demo_tenant(store: &dyn facegate_storage::Store) -> Result<String, StoreError> {
    let tenant = match store.find_tenant(DEMO_TENANT) {
        Ok(t) => t,
        Err(StoreError::NotFound(_)) => {
            let t = Tenant {
                id: "t_demo".into(),
                name: DEMO_TENANT.into(),
                created_at: facegate_auth::now(),
            };
            store.create_tenant(&t)?;
            t
        }
        Err(e) => return Err(e),
    };
    if let Err(StoreError::NotFound(_)) = store.client(DEMO_CLIENT) {
        let secret = facegate_auth::secrets::new_secret().map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        let hash =
            facegate_auth::secrets::hash_secret(&secret).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        store.create_client(&Client {
            id: DEMO_CLIENT.into(),
            tenant_id: tenant.id.clone(),
            secret_hash: hash,
            permissions: Vec::new(),
            created_at: facegate_auth::now(),
            revoked_at: None,
        })?;
    }
    Ok(tenant.id)
}

/// `POST /demo/session`: multipart `idPhoto` → a session and its SDK token.
pub async fn create_session(
    State(state): State<AppState>,
    Admitted(admission): Admitted<1>,
    form: Multipart,
) -> Result<(StatusCode, axum::Json<CreateSessionResponse>), ApiError> {
    demo_enabled(&state)?;
    let (photo, _, _) = multipart_request(form).await?;
    let analysed = analyze_bytes(&state, &admission, "idPhoto", photo, Keep::Image).await?;
    let tenant = state.store(ensure_demo_tenant).await?;
    let created = new_session(&state, &tenant, DEMO_CLIENT, analysed, 3, 3).await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}
