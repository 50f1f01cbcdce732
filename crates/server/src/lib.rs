//! facegate-server: the HTTP API.
//!
//! Shaped after zero2prod and meilisearch: [`startup::Application`] builds
//! the app from a [`config::Config`] (so tests run the real server on port 0
//! with a fresh data directory); one module per resource under [`routes`];
//! one error table in [`error`]; claims arrive through the [`auth::Caller`]
//! extractor. Face work runs on the bounded [`inference`] pool, never on the
//! async threads. Nothing below this crate knows about HTTP.

pub mod admin;
pub mod analysis;
pub mod at_rest;
pub mod auth;
pub mod config;
pub mod connections;
pub mod cors;
pub mod error;
pub mod extract;
pub mod gallery;
pub mod headers;
pub mod inference;
pub mod limiter;
pub mod reindex;
pub mod routes;
pub mod secret_checks;
pub mod security;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use config::{Config, LogFormat, PartialConfig};
pub use startup::{Application, StartError, shutdown_signal};
