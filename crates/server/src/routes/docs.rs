//! The OpenAPI 3 document (JSON and YAML) and a browsable docs page.
//!
//! The page is rendered on the server from the same document, with no
//! external scripts: facegate runs on networks that reach nothing outside.

use std::fmt::Write;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, OAuthErrorBody};
use crate::routes::{face_match, gallery, info, ops, session, token};

#[derive(OpenApi)]
#[openapi(
    info(title = "facegate", description = "Self-hosted face verification, compatible with the uqudo Face API. \
        Fields marked as facegate additions are not in uqudo's API; none of uqudo's fields are renamed."),
    paths(token::issue_token, face_match::face_match, gallery::search, gallery::insert, gallery::delete,
        session::create, session::start_attempt, session::upload_frame, session::finish,
        info::result, info::image, info::delete, info::jwks,
        ops::healthz, ops::readyz, ops::metrics),
    components(schemas(ErrorBody, OAuthErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "OAuth2 client credentials"),
        (name = "face", description = "Face verification"),
        (name = "session", description = "Face sessions. `POST /api/v1/face` and `/api/v1/info` are uqudo's. The capture \
            protocol under `/api/v1/face/sessions/{sessionId}` is facegate's own, used by the browser SDK at `/sdk/facegate.js`: \
            start an attempt to get a random sequence of head movements (TURN_LEFT, TURN_RIGHT, LOOK_STRAIGHT) and a nonce; \
            upload JPEG frames (at most 640 px, about one per frameIntervalMs), each answered with its quality status and \
            the progress; then finish, and the server decides: liveness from the frames (movements in order and in time, \
            3D consistency of the landmark motion, one identity throughout, quality gates), then a match of the most \
            frontal frame against the ID photo. A completed session's result is a compact JWS (RS256 by default, as uqudo's; kid; typ JWT) verifiable with \
            the JWKS at `/api/.well-known/jwks.json`. Capture endpoints accept the session's `sdkToken` or a token with \
            face:session, and answer CORS preflights for the tenant's listed origins."),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub async fn openapi_json() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

pub async fn openapi_yaml() -> impl IntoResponse {
    match ApiDoc::openapi().to_yaml() {
        Ok(yaml) => ([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response(),
        Err(e) => crate::error::ApiError::internal(e).into_response(),
    }
}

pub async fn docs_page() -> Html<String> {
    Html(render(&ApiDoc::openapi()))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn render(doc: &utoipa::openapi::OpenApi) -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=utf-8><meta name=viewport content='width=device-width'>\
         <title>facegate API</title><style>body{font:15px system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}\
         .op{border:1px solid #ccc;border-radius:6px;margin:1em 0;padding:.5em 1em}.m{font-weight:bold;text-transform:uppercase}\
         pre{background:#f6f6f6;padding:.5em;overflow:auto}</style></head><body>",
    );
    let _ = write!(
        html,
        "<h1>{}</h1><p>{}</p><p>Machine-readable: <a href='/api/v1/openapi.json'>openapi.json</a> · \
         <a href='/api/v1/openapi.yaml'>openapi.yaml</a></p>",
        escape(&doc.info.title),
        escape(doc.info.description.as_deref().unwrap_or_default())
    );
    let value = serde_json::to_value(doc).unwrap_or_default();
    if let Some(paths) = value["paths"].as_object() {
        for (path, methods) in paths {
            for (method, op) in methods.as_object().into_iter().flatten() {
                render_operation(&mut html, path, method, op);
            }
        }
    }
    let schemas = serde_json::to_string_pretty(&value["components"]).unwrap_or_default();
    let _ = write!(html, "<h2>Schemas</h2><pre>{}</pre></body></html>", escape(&schemas));
    html
}

fn render_operation(html: &mut String, path: &str, method: &str, op: &serde_json::Value) {
    let _ = write!(
        html,
        "<div class=op><p><span class=m>{}</span> <code>{}</code> — {}</p>",
        escape(method),
        escape(path),
        escape(op["summary"].as_str().unwrap_or_default())
    );
    if let Some(body) = op.get("requestBody") {
        let _ = write!(
            html,
            "<p>Request</p><pre>{}</pre>",
            escape(&serde_json::to_string_pretty(body).unwrap_or_default())
        );
    }
    html.push_str("<ul>");
    for (status, response) in op["responses"].as_object().into_iter().flatten() {
        let _ = write!(
            html,
            "<li><b>{}</b> {}</li>",
            escape(status),
            escape(response["description"].as_str().unwrap_or_default())
        );
    }
    html.push_str("</ul></div>");
}
