//! `facegate serve`: the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use facegate_server::{Application, LogFormat, PartialConfig, shutdown_signal, telemetry};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "FACEGATE_LISTEN")]
    listen: Option<SocketAddr>,
    /// TOML file with any of the settings (lower priority than flags and env).
    #[arg(long, env = "FACEGATE_CONFIG")]
    config: Option<PathBuf>,
    /// text or json [default: text].
    #[arg(long, env = "FACEGATE_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Inference worker threads [default: one per core].
    #[arg(long, env = "FACEGATE_WORKERS")]
    workers: Option<usize>,
    /// Inference jobs that may wait before the API answers 503 [default: 64].
    #[arg(long, env = "FACEGATE_QUEUE_CAPACITY")]
    queue_capacity: Option<usize>,
    /// Most faces a worker embeds in one SFace call under load [default: 1, no batching].
    #[arg(long, env = "FACEGATE_EMBED_BATCH")]
    embed_batch: Option<usize>,
    /// Seconds a face session lives [default: 600].
    #[arg(long, env = "FACEGATE_SESSION_TTL")]
    session_ttl: Option<i64>,
    /// Serve the operator demo page at /demo (off by default).
    #[arg(long, env = "FACEGATE_DEMO")]
    demo: bool,
    /// A calibration file from `facegate calibrate --dataset` [default: the built-in table].
    #[arg(long, env = "FACEGATE_CALIBRATION")]
    calibration: Option<PathBuf>,
    /// RS256 or ES256: the algorithm of session results [default: RS256, as uqudo's].
    #[arg(long, env = "FACEGATE_RESULT_ALGORITHM")]
    result_algorithm: Option<facegate_server::config::ResultAlgorithm>,
    /// Milliseconds a client has to send a request's headers; also how long
    /// an idle keep-alive connection stays open [default: 10000].
    #[arg(long, env = "FACEGATE_HEADER_TIMEOUT_MS")]
    header_timeout_ms: Option<u64>,
    /// Milliseconds a client has to send a whole request body [default: 120000].
    #[arg(long, env = "FACEGATE_BODY_TIMEOUT_MS")]
    body_timeout_ms: Option<u64>,
    /// Milliseconds a read or write on a connection may make no progress [default: 30000].
    #[arg(long, env = "FACEGATE_IDLE_TIMEOUT_MS")]
    idle_timeout_ms: Option<u64>,
    /// Connections served at once; more wait in the listen backlog [default: 1024].
    #[arg(long, env = "FACEGATE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
}

pub fn run(args: ServeArgs, storage: PartialConfig, models_dir: Option<PathBuf>) -> Result<()> {
    let flags = PartialConfig {
        listen: args.listen,
        models_dir,
        log_format: args.log_format,
        workers: args.workers,
        queue_capacity: args.queue_capacity,
        embed_batch: args.embed_batch,
        session_ttl: args.session_ttl,
        demo: args.demo.then_some(true),
        calibration: args.calibration,
        result_algorithm: args.result_algorithm,
        header_timeout_ms: args.header_timeout_ms,
        body_timeout_ms: args.body_timeout_ms,
        idle_timeout_ms: args.idle_timeout_ms,
        max_connections: args.max_connections,
        ..storage
    };
    let file = args
        .config
        .as_deref()
        .map(PartialConfig::from_file)
        .transpose()?
        .unwrap_or_default();
    let config = flags.or(file).resolve()?;
    telemetry::init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let data_dir = config.data_dir.clone();
        let embedded = config.database_url.is_none();
        let app = Application::build(config).await?;
        let addr = app.local_addr()?;
        tracing::info!(%addr, "facegate is listening");
        let store = std::sync::Arc::clone(&app.state().store);
        let has_clients = tokio::task::spawn_blocking(move || store.clients(None).map(|c| !c.is_empty())).await??;
        if embedded && !has_clients {
            print_first_start_help(&data_dir, addr);
        }
        app.run_until(shutdown_signal()).await?;
        Ok(())
    })
}

fn print_first_start_help(data_dir: &std::path::Path, addr: SocketAddr) {
    let d = data_dir.display();
    eprintln!(
        "\nNo API clients yet. Create one (in another shell, from this directory):\n\
         \n  ./target/release/facegate tenant create acme --data-dir {d}\
         \n  ./target/release/facegate client create --tenant acme --permissions all --data-dir {d}\n\
         \nThen get a token:\n\
         \n  curl -s http://{addr}/api/oauth/token -d grant_type=client_credentials -d client_id=ID -d client_secret=SECRET\n\
         \nAPI docs: http://{addr}/docs\n"
    );
}
