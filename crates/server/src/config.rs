//! Server configuration, layered: command-line flags, then `FACEGATE_*`
//! environment variables (both through clap in the CLI), then an optional
//! TOML file, then the embedded defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use facegate_auth::TokenConfig;
use facegate_storage::PostgresOptions;
use facegate_vision::DecodeLimits;
use serde::Deserialize;

use crate::at_rest::{DatabaseUrl, MasterKey, StorageConfig};
use crate::connections::ConnectionLimits;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format must be text or json, not {other:?}")),
        }
    }
}

/// The algorithm session results are signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum ResultAlgorithm {
    /// As uqudo's results: integrations that pin it accept facegate's.
    #[default]
    RS256,
    ES256,
}

impl std::str::FromStr for ResultAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS256" => Ok(ResultAlgorithm::RS256),
            "ES256" => Ok(ResultAlgorithm::ES256),
            other => Err(format!("the result algorithm must be RS256 or ES256, not {other:?}")),
        }
    }
}

impl From<ResultAlgorithm> for facegate_auth::Algorithm {
    fn from(a: ResultAlgorithm) -> Self {
        match a {
            ResultAlgorithm::RS256 => facegate_auth::Algorithm::RS256,
            ResultAlgorithm::ES256 => facegate_auth::Algorithm::ES256,
        }
    }
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub models_dir: PathBuf,
    pub log_format: LogFormat,
    /// Inference worker threads (one engine each).
    pub workers: usize,
    /// Inference jobs that may wait; beyond this the API answers 503.
    pub queue_capacity: usize,
    /// Most faces a worker embeds in one SFace call, taken from the queue
    /// under load (1: no micro-batching, the default: measured in the
    /// README, it did not pay on these CPUs).
    pub embed_batch: usize,
    pub tokens: TokenConfig,
    pub limits: DecodeLimits,
    /// Largest request body, in bytes (two base64 images fit).
    pub body_limit: usize,
    /// Smallest accepted distance between the eyes, in pixels.
    pub min_interocular: f32,
    /// Failed token requests allowed per source address and client id per
    /// minute; an address may fail `ADDRESS_FACTOR` (6) times that across
    /// all client ids.
    pub failed_auth_per_minute: u32,
    /// 1:N false-positive identification rate target per search.
    pub fpir_target: f64,
    /// Base64 AES-256 key for stored images; default: `<data-dir>/image.key`.
    pub data_key: Option<String>,
    /// Seconds a face session lives.
    pub session_ttl: i64,
    /// Seconds a completed session's result and audit image are kept.
    pub result_retention: i64,
    /// Seconds between sweeps of expired sessions.
    pub sweep_interval: u64,
    /// Serve the operator demo page at `/demo`.
    pub demo: bool,
    /// Galleries larger than this are searched through the sign-sketch pre-filter.
    pub exact_scan_max_faces: usize,
    /// A calibration file from `facegate calibrate --dataset`; default: the built-in table.
    pub calibration: Option<PathBuf>,
    /// PostgreSQL instead of SQLite in the data directory.
    pub database_url: Option<DatabaseUrl>,
    pub master_key_file: Option<PathBuf>,
    pub master_key: Option<MasterKey>,
    /// This node's PostgreSQL pool and timeouts.
    pub postgres: PostgresOptions,
    /// Seconds between reloads of the signing keys: how long a rotation
    /// takes to reach every node.
    pub key_reload_interval: u64,
    /// Milliseconds between reads of the gallery change log (searches
    /// read it too, so this bounds only how stale an idle node gets).
    pub gallery_follow_interval_ms: u64,
    /// Timeouts and the cap on open connections.
    pub connections: ConnectionLimits,
    /// Security events are also appended here as JSON lines.
    pub security_log: Option<PathBuf>,
}

impl Config {
    pub fn storage(&self) -> StorageConfig {
        StorageConfig {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            master_key_file: self.master_key_file.clone(),
            master_key: self.master_key.clone(),
            postgres: self.postgres,
            security_log: self.security_log.clone(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            models_dir: PathBuf::from("models"),
            log_format: LogFormat::Text,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_capacity: 64,
            embed_batch: 1,
            tokens: TokenConfig::default(),
            limits: DecodeLimits::default(),
            body_limit: 16 * 1024 * 1024,
            min_interocular: 12.0,
            failed_auth_per_minute: 5,
            fpir_target: 0.01,
            data_key: None,
            session_ttl: 600,
            result_retention: 3600,
            sweep_interval: 30,
            demo: false,
            exact_scan_max_faces: facegate_gallery::EXACT_MAX,
            calibration: None,
            database_url: None,
            master_key_file: None,
            master_key: None,
            postgres: PostgresOptions::default(),
            key_reload_interval: 5,
            gallery_follow_interval_ms: 200,
            connections: ConnectionLimits::default(),
            security_log: None,
        }
    }
}

/// Any subset of the settings: from flags, the environment or a file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PartialConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub models_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub workers: Option<usize>,
    pub queue_capacity: Option<usize>,
    pub embed_batch: Option<usize>,
    pub token_ttl: Option<i64>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub result_algorithm: Option<ResultAlgorithm>,
    pub max_image_bytes: Option<usize>,
    pub max_image_pixels: Option<u64>,
    pub min_interocular: Option<f32>,
    pub failed_auth_per_minute: Option<u32>,
    pub fpir_target: Option<f64>,
    pub data_key: Option<String>,
    pub session_ttl: Option<i64>,
    pub result_retention: Option<i64>,
    pub sweep_interval: Option<u64>,
    pub demo: Option<bool>,
    pub exact_scan_max_faces: Option<usize>,
    pub calibration: Option<PathBuf>,
    pub database_url: Option<DatabaseUrl>,
    pub master_key_file: Option<PathBuf>,
    pub master_key: Option<MasterKey>,
    pub db_pool_size: Option<u32>,
    pub db_acquire_timeout_ms: Option<u64>,
    pub db_statement_timeout_ms: Option<u64>,
    pub key_reload_interval: Option<u64>,
    pub gallery_follow_interval_ms: Option<u64>,
    pub header_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub security_log: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl PartialConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// Settings from `self`, falling back to `lower` field by field.
    pub fn or(self, lower: PartialConfig) -> PartialConfig {
        PartialConfig {
            listen: self.listen.or(lower.listen),
            data_dir: self.data_dir.or(lower.data_dir),
            models_dir: self.models_dir.or(lower.models_dir),
            log_format: self.log_format.or(lower.log_format),
            workers: self.workers.or(lower.workers),
            queue_capacity: self.queue_capacity.or(lower.queue_capacity),
            embed_batch: self.embed_batch.or(lower.embed_batch),
            token_ttl: self.token_ttl.or(lower.token_ttl),
            issuer: self.issuer.or(lower.issuer),
            audience: self.audience.or(lower.audience),
            result_algorithm: self.result_algorithm.or(lower.result_algorithm),
            max_image_bytes: self.max_image_bytes.or(lower.max_image_bytes),
            max_image_pixels: self.max_image_pixels.or(lower.max_image_pixels),
            min_interocular: self.min_interocular.or(lower.min_interocular),
            failed_auth_per_minute: self.failed_auth_per_minute.or(lower.failed_auth_per_minute),
            fpir_target: self.fpir_target.or(lower.fpir_target),
            data_key: self.data_key.or(lower.data_key),
            session_ttl: self.session_ttl.or(lower.session_ttl),
            result_retention: self.result_retention.or(lower.result_retention),
            sweep_interval: self.sweep_interval.or(lower.sweep_interval),
            demo: self.demo.or(lower.demo),
            exact_scan_max_faces: self.exact_scan_max_faces.or(lower.exact_scan_max_faces),
            calibration: self.calibration.or(lower.calibration),
            database_url: self.database_url.or(lower.database_url),
            master_key_file: self.master_key_file.or(lower.master_key_file),
            master_key: self.master_key.or(lower.master_key),
            db_pool_size: self.db_pool_size.or(lower.db_pool_size),
            db_acquire_timeout_ms: self.db_acquire_timeout_ms.or(lower.db_acquire_timeout_ms),
            db_statement_timeout_ms: self.db_statement_timeout_ms.or(lower.db_statement_timeout_ms),
            key_reload_interval: self.key_reload_interval.or(lower.key_reload_interval),
            gallery_follow_interval_ms: self.gallery_follow_interval_ms.or(lower.gallery_follow_interval_ms),
            header_timeout_ms: self.header_timeout_ms.or(lower.header_timeout_ms),
            body_timeout_ms: self.body_timeout_ms.or(lower.body_timeout_ms),
            idle_timeout_ms: self.idle_timeout_ms.or(lower.idle_timeout_ms),
            max_connections: self.max_connections.or(lower.max_connections),
            security_log: self.security_log.or(lower.security_log),
        }
    }

    /// Fills the gaps with the defaults and checks the result.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let d = Config::default();
        let connections = connection_limits(&self, d.connections);
        let config = Config {
            listen: self.listen.unwrap_or(d.listen),
            data_dir: self.data_dir.unwrap_or(d.data_dir),
            models_dir: self.models_dir.unwrap_or(d.models_dir),
            log_format: self.log_format.unwrap_or(d.log_format),
            workers: self.workers.unwrap_or(d.workers),
            queue_capacity: self.queue_capacity.unwrap_or(d.queue_capacity),
            embed_batch: self.embed_batch.unwrap_or(d.embed_batch),
            tokens: TokenConfig {
                issuer: self.issuer.unwrap_or(d.tokens.issuer),
                audience: self.audience.unwrap_or(d.tokens.audience),
                ttl: self.token_ttl.unwrap_or(d.tokens.ttl),
                result_algorithm: self
                    .result_algorithm
                    .map_or(d.tokens.result_algorithm, facegate_auth::Algorithm::from),
            },
            limits: DecodeLimits {
                max_bytes: self.max_image_bytes.unwrap_or(d.limits.max_bytes),
                max_pixels: self.max_image_pixels.unwrap_or(d.limits.max_pixels),
                ..d.limits
            },
            body_limit: d.body_limit,
            min_interocular: self.min_interocular.unwrap_or(d.min_interocular),
            failed_auth_per_minute: self.failed_auth_per_minute.unwrap_or(d.failed_auth_per_minute),
            fpir_target: self.fpir_target.unwrap_or(d.fpir_target),
            data_key: self.data_key.or(d.data_key),
            session_ttl: self.session_ttl.unwrap_or(d.session_ttl),
            result_retention: self.result_retention.unwrap_or(d.result_retention),
            sweep_interval: self.sweep_interval.unwrap_or(d.sweep_interval),
            demo: self.demo.unwrap_or(d.demo),
            exact_scan_max_faces: self.exact_scan_max_faces.unwrap_or(d.exact_scan_max_faces),
            calibration: self.calibration.or(d.calibration),
            database_url: self.database_url.or(d.database_url),
            master_key_file: self.master_key_file.or(d.master_key_file),
            master_key: self.master_key.or(d.master_key),
            postgres: PostgresOptions {
                pool_size: self.db_pool_size.unwrap_or(d.postgres.pool_size),
                acquire_timeout: self
                    .db_acquire_timeout_ms
                    .map_or(d.postgres.acquire_timeout, std::time::Duration::from_millis),
                statement_timeout: self
                    .db_statement_timeout_ms
                    .map_or(d.postgres.statement_timeout, std::time::Duration::from_millis),
            },
            key_reload_interval: self.key_reload_interval.unwrap_or(d.key_reload_interval),
            gallery_follow_interval_ms: self.gallery_follow_interval_ms.unwrap_or(d.gallery_follow_interval_ms),
            connections,
            security_log: self.security_log.or(d.security_log),
        };
        let c = config.connections;
        if c.max_connections == 0
            || [c.header_timeout, c.body_timeout, c.idle_timeout]
                .iter()
                .any(|t| t.is_zero())
        {
            return Err(ConfigError::Invalid(
                "header-timeout-ms, body-timeout-ms, idle-timeout-ms and max-connections must be positive".into(),
            ));
        }
        let p = config.postgres;
        if p.pool_size == 0 || p.acquire_timeout.is_zero() || p.statement_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "db-pool-size, db-acquire-timeout-ms and db-statement-timeout-ms must be positive".into(),
            ));
        }
        if config.key_reload_interval == 0 || config.gallery_follow_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "key-reload-interval and gallery-follow-interval-ms must be positive".into(),
            ));
        }
        if config.session_ttl <= 0 || config.result_retention < 0 || config.sweep_interval == 0 {
            return Err(ConfigError::Invalid(
                "session-ttl and sweep-interval must be positive, result-retention not negative".into(),
            ));
        }
        if !(config.fpir_target > 0.0 && config.fpir_target < 1.0) {
            return Err(ConfigError::Invalid("fpir-target must be between 0 and 1".into()));
        }
        if config.workers == 0 || config.queue_capacity == 0 || config.embed_batch == 0 {
            return Err(ConfigError::Invalid(
                "workers, queue-capacity and embed-batch must be at least 1".into(),
            ));
        }
        if config.tokens.ttl <= 0 {
            return Err(ConfigError::Invalid("token-ttl must be positive".into()));
        }
        // Two images as base64 (4/3 larger) plus the JSON around them.
        let body_limit = (config.limits.max_bytes * 4 / 3 + 1024) * 2 + 64 * 1024;
        Ok(Config { body_limit, ..config })
    }
}

/// The connection settings given, the defaults for the others.
fn connection_limits(p: &PartialConfig, d: ConnectionLimits) -> ConnectionLimits {
    let ms = |v: Option<u64>, default| v.map_or(default, std::time::Duration::from_millis);
    ConnectionLimits {
        header_timeout: ms(p.header_timeout_ms, d.header_timeout),
        body_timeout: ms(p.body_timeout_ms, d.body_timeout),
        idle_timeout: ms(p.idle_timeout_ms, d.idle_timeout),
        max_connections: p.max_connections.unwrap_or(d.max_connections),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let file: PartialConfig =
            toml::from_str("listen = \"0.0.0.0:9000\"\nworkers = 3\ntoken-ttl = 600\n").expect("toml");
        let flags = PartialConfig {
            workers: Some(1),
            ..PartialConfig::default()
        };
        let config = flags.or(file).resolve().expect("valid");
        assert_eq!(config.workers, 1);
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.tokens.ttl, 600);
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert!(config.body_limit > 2 * 5 * 1024 * 1024 * 4 / 3);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(toml::from_str::<PartialConfig>("listn = \"x\"").is_err());
        let zero = PartialConfig {
            workers: Some(0),
            ..PartialConfig::default()
        };
        assert!(zero.resolve().is_err());
    }
}
