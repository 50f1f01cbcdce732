//! The `facegate` command: face engine tools (compare, detect, embed), the
//! measurement commands (eval, calibrate, bench) and model checks.

mod admin;
mod bench;
mod calibrate;
mod crops;
mod dataset_eval;
mod eval;
mod inspect;
mod light_eval;
mod liveness_eval;
mod progress;
mod serve;
mod storage_args;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use facegate_vision::{EngineOptions, FaceEngine, ModelsDir};

#[derive(Parser)]
#[command(name = "facegate", version, about = "Self-hosted face verification")]
struct Cli {
    /// Directory holding the models and libonnxruntime.so (see `make setup`) [default: models].
    #[arg(long, global = true, env = "FACEGATE_MODELS_DIR")]
    models_dir: Option<PathBuf>,
    /// Directory holding the database and signing keys [default: data].
    #[arg(long, global = true, env = "FACEGATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    storage: storage_args::StorageArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API server.
    Serve(serve::ServeArgs),
    /// Bring the database schema to this build's version (PostgreSQL needs it
    /// before `serve`; SQLite migrates itself).
    Migrate,
    /// Move the store between backends.
    #[command(subcommand)]
    Db(DbCommand),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(admin::TenantCommand),
    /// Manage API clients.
    #[command(subcommand)]
    Client(admin::ClientCommand),
    /// Manage token signing keys.
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// Compare the subjects of two photos.
    Compare(inspect::CompareArgs),
    /// Detect faces: boxes, landmarks and quality.
    Detect(inspect::DetectArgs),
    /// Print the subject's embedding as JSON.
    Embed(inspect::EmbedArgs),
    /// Measure accuracy on a dataset.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Measure match-level thresholds: the built-in table, or a file from your own people (--dataset).
    Calibrate(calibrate::CalibrateArgs),
    /// Re-embed every gallery face that has its image onto a model version.
    Reindex {
        /// The target model version (this build's: see `facegate models verify`).
        #[arg(long)]
        model: String,
        #[arg(long)]
        json: bool,
    },
    /// Per-stage timings and throughput.
    Bench(bench::BenchCommand),
    /// Check the model files against their pinned hashes.
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Subcommand)]
enum DbCommand {
    /// Copy everything from a SQLite data directory into PostgreSQL (keys and sealed
    /// images included), verify every table by count and checksum; safe to re-run.
    Copy {
        /// The data directory to copy [default: --data-dir].
        #[arg(long)]
        from: Option<PathBuf>,
        /// The PostgreSQL URL to copy into (migrated first).
        #[arg(long)]
        to: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Verify every model file and the ONNX Runtime library.
    Verify,
    /// Write aligned LFW faces for calibrating a quantised SFace.
    Crops(crops::CropsArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let models_dir = cli.models_dir.clone().unwrap_or_else(default_models_dir);
    let models = ModelsDir::new(&models_dir);
    let data_dir = cli.data_dir.clone().unwrap_or_else(|| PathBuf::from("data"));
    if !matches!(cli.command, Command::Serve(_)) {
        die_quietly_on_closed_pipe();
    }
    let storage = || cli.storage.storage(&data_dir);
    match cli.command {
        Command::Serve(args) => serve::run(args, cli.storage.partial(cli.data_dir.clone()), Some(models_dir)),
        Command::Migrate => storage_args::migrate(&storage()?),
        Command::Db(DbCommand::Copy { from, to, json }) => {
            storage_args::copy(from.as_deref().unwrap_or(&data_dir), &to, json)
        }
        Command::Tenant(cmd) => admin::tenant(&storage()?, cmd),
        Command::Client(cmd) => admin::client(&storage()?, cmd),
        Command::Keys(cmd) => admin::keys(&storage()?, cmd),
        Command::Reindex { model, json } => admin::reindex(&storage()?, &models, &model, json),
        Command::Compare(args) => inspect::compare(&models, &args),
        Command::Detect(args) => inspect::detect(&models, &args),
        Command::Embed(args) => inspect::embed(&models, &args),
        Command::Eval(cmd) => eval::run(&models, cmd),
        Command::Calibrate(args) => calibrate::run(&models, &args),
        Command::Bench(cmd) => bench::run(&models, cmd, cli.storage.database_url()),
        Command::Models(ModelsCommand::Verify) => verify(&models),
        Command::Models(ModelsCommand::Crops(args)) => crops::run(&models, &args),
    }
}

/// Restores the default SIGPIPE action, so that `facegate embed x.jpg |
/// head -c 10` ends the way Unix tools do instead of panicking in
/// `println!`: Rust ignores SIGPIPE, which turns a closed pipe into a write
/// error. The server keeps ignoring it; its sockets report EPIPE as errors.
fn die_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// `./models`, or else the checkout's `models/` when the binary runs from
/// its `target/<profile>/` directory, so `facegate` works from any directory.
fn default_models_dir() -> PathBuf {
    let local = PathBuf::from("models");
    if local.is_dir() {
        return local;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent()?.parent().map(|root| root.join("models")))
        .filter(|dir| dir.is_dir())
        .unwrap_or(local)
}

fn verify(models: &ModelsDir) -> anyhow::Result<()> {
    use facegate_vision::models::{ONNXRUNTIME, SFACE, SFACE_ORIGINAL, YUNET, YUNET_ORIGINAL};
    for file in [YUNET, SFACE, YUNET_ORIGINAL, SFACE_ORIGINAL, ONNXRUNTIME] {
        let path = models.verified(&file)?;
        println!("ok  {}  {}", file.sha256, path.display());
    }
    FaceEngine::load(models, EngineOptions::default())?;
    println!(
        "models load in ONNX Runtime; model version {}",
        facegate_vision::MODEL_VERSION
    );
    Ok(())
}
