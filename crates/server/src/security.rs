//! The security event log: what an auditor asks about after an incident.
//!
//! Failed and throttled token requests, use of a revoked client's token,
//! permission denials, admin actions, and every read or deletion of a
//! result or an image. Each event names the tenant, the client, the
//! request id and the source address where they are known, and never a
//! secret, a token, an image or an embedding: events are built from ids
//! only, and a client id as typed by a caller is kept only when it has the
//! shape of an id.
//!
//! Events go to the process log under the target `facegate::security`,
//! and, when a file is configured, to that file as JSON lines (appended,
//! so the file can be shipped and rotated like any log).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use serde::Serialize;

/// The log target of security events.
pub const TARGET: &str = "facegate::security";

/// Where a request came from: its id and its peer address.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: Option<String>,
    pub source: Option<IpAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts))
    }
}

impl RequestContext {
    pub fn of(parts: &Parts) -> Self {
        // The id was checked (or made) by the request-id layers before any
        // handler runs, so it is short and safe to log.
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip());
        Self { request_id, source }
    }
}

/// One event. Built by [`SecurityEvent::new`] and the setters below.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityEvent {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub event: &'static str,
    pub tenant: Option<String>,
    pub client: Option<String>,
    pub request_id: Option<String>,
    pub source: Option<IpAddr>,
    /// What the event is about: a session id, a face id, a permission, a
    /// command; ids and names only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl SecurityEvent {
    pub fn new(event: &'static str, context: &RequestContext) -> Self {
        Self {
            time_ms: facegate_storage::shared::now_ms(),
            event,
            tenant: None,
            client: None,
            request_id: context.request_id.clone(),
            source: context.source,
            subject: None,
        }
    }

    /// An event outside any request (the admin CLI).
    pub fn admin(event: &'static str) -> Self {
        Self::new(event, &RequestContext::default())
    }

    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    pub fn client(mut self, client: impl Into<String>) -> Self {
        self.client = Some(client.into());
        self
    }

    /// A client id as a caller typed it: kept only when it has the shape
    /// of an id, since a confused caller may type its secret there.
    pub fn claimed_client(mut self, typed: &str) -> Self {
        let shaped = facegate_auth::secrets::is_client_id_shaped(typed);
        self.client = Some(if shaped {
            typed.into()
        } else {
            "<not a client id>".into()
        });
        self
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
}

/// Writes security events; shared by every request of a node.
#[derive(Debug, Default)]
pub struct SecurityLog {
    file: Option<Mutex<std::fs::File>>,
}

impl SecurityLog {
    /// The log, appending to `path` when one is given (created 0600).
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let Some(path) = path else { return Ok(Self::default()) };
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        Ok(Self {
            file: Some(Mutex::new(options.open(path)?)),
        })
    }

    pub fn record(&self, event: SecurityEvent) {
        tracing::info!(
            target: TARGET,
            event = event.event,
            tenant = event.tenant.as_deref(),
            client = event.client.as_deref(),
            request_id = event.request_id.as_deref(),
            source = event.source.map(tracing::field::display),
            subject = event.subject.as_deref(),
            "security event"
        );
        let Some(file) = &self.file else { return };
        let Ok(mut line) = serde_json::to_vec(&event) else {
            return;
        };
        line.push(b'\n');
        // One short append per event; a poisoned lock still holds the file.
        let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(&line) {
            tracing::error!(error = %e, "writing the security log failed");
        }
    }
}
