//! facegate-testdb: real, throwaway PostgreSQL servers for tests.
//!
//! `initdb` into a temporary directory and `postgres` on a free local port,
//! from Debian's `postgresql` package (`make test` installs it). As root the
//! server runs as the `postgres` user, which PostgreSQL requires. Each
//! server lives in a small shell that stops it and deletes its directory
//! when the test process exits (its stdin closes), so nothing is left behind
//! even when a test panics.
//!
//! Without PostgreSQL installed, [`shared`] and [`Server::start`] return
//! `None` after printing why, so the tests skip loudly; with
//! `FACEGATE_REQUIRE_POSTGRES` set (CI), they panic instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The superuser's password in every test server.
pub const PASSWORD: &str = "facegate-test-password";
const USER: &str = "facegate";

/// A running test server.
pub struct Server {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    durable: bool,
    /// Whether TCP connections must use TLS.
    tls: bool,
    /// The shell that owns `postgres`; dropping it stops the server.
    guard: Option<Child>,
}

/// Why PostgreSQL could not be had.
fn unavailable(why: &str) -> Option<Server> {
    if std::env::var_os("FACEGATE_REQUIRE_POSTGRES").is_some() {
        panic!("PostgreSQL is required (FACEGATE_REQUIRE_POSTGRES) but {why}");
    }
    eprintln!("SKIPPED: PostgreSQL tests need Debian's postgresql package (`make services`): {why}");
    None
}

/// One server for the whole test process (each test takes its own
/// database from it with [`Server::database`]). Not durable: fsync is off.
pub fn shared() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER.get_or_init(|| Server::start(false)).as_ref()
}

/// The directory holding `initdb` and `postgres`.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FACEGATE_PG_BIN") {
        return Some(dir.into());
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// The `postgres` user's uid and gid, when running as root.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    })
}

/// Whether this process runs as root (servers then run as another user).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    })
}

/// `command`, run as `postgres` when we are root.
fn as_server_user(mut command: Command) -> Command {
    if is_root()
        && let Some((uid, gid)) = postgres_user()
    {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid);
    }
    command
}

/// Writes a file the server reads: owned by the server's user, and private
/// (PostgreSQL refuses a key that others may read).
fn write_owned(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    if is_root() {
        let (uid, gid) = postgres_user().ok_or("running as root and there is no postgres user")?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A local TCP port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A server certificate and its key, both PEM.
pub struct TlsFiles {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Client authentication when TCP needs TLS: the socket and TLS connections
/// with a password, and every TCP connection without TLS refused.
const TLS_ONLY_HBA: &str = "local all all scram-sha-256\n\
                            hostssl all all 127.0.0.1/32 scram-sha-256\n\
                            hostnossl all all 0.0.0.0/0 reject\n";

impl Server {
    /// Starts a server of its own (for tests that stop and restart it).
    /// `durable` keeps fsync on, for benchmarks of durable writes.
    pub fn start(durable: bool) -> Option<Server> {
        Self::start_with(durable, None)
    }

    /// Starts a server that accepts TCP connections only over TLS, with
    /// this certificate.
    pub fn start_tls(files: &TlsFiles) -> Option<Server> {
        Self::start_with(false, Some(files))
    }

    fn start_with(durable: bool, tls: Option<&TlsFiles>) -> Option<Server> {
        let Some(bin) = bin_dir() else {
            return unavailable("no /usr/lib/postgresql/*/bin/initdb");
        };
        match Self::init(bin, durable, tls) {
            Ok(server) => Some(server),
            Err(e) => unavailable(&format!("starting it failed: {e}")),
        }
    }

    fn init(bin: PathBuf, durable: bool, tls: Option<&TlsFiles>) -> Result<Server, String> {
        let dir = tempfile::Builder::new()
            .prefix("facegate-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let pwfile = dir.join("pw");
        std::fs::File::create(&pwfile)
            .and_then(|mut f| f.write_all(PASSWORD.as_bytes()))
            .map_err(|e| e.to_string())?;
        if is_root() {
            let (uid, gid) = postgres_user().ok_or("running as root and there is no postgres user")?;
            for path in [&dir, &pwfile] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
            }
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(dir.join("data"))
            .args([
                "-U",
                USER,
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null());
        let out = as_server_user(initdb).output().map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        if let Some(files) = tls {
            let data = dir.join("data");
            write_owned(&data.join("server.crt"), &files.cert_pem)?;
            write_owned(&data.join("server.key"), &files.key_pem)?;
            write_owned(&data.join("pg_hba.conf"), TLS_ONLY_HBA)?;
        }
        let mut server = Server {
            port: 0,
            dir,
            bin,
            durable,
            tls: tls.is_some(),
            guard: None,
        };
        server.run()?;
        Ok(server)
    }

    /// Starts `postgres` (again) on a free port, or on the same one.
    fn run(&mut self) -> Result<(), String> {
        if self.port == 0 {
            self.port = free_port().map_err(|e| e.to_string())?;
        }
        let fsync = if self.durable { "on" } else { "off" };
        let ssl = if self.tls { "on" } else { "off" };
        let data = self.dir.join("data");
        // The shell stops the server when our end of its stdin closes (we
        // exit or call `stop`), then deletes the directory unless asked to
        // keep it for a restart.
        let script = format!(
            "'{bin}/postgres' -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 \
             -c fsync={fsync} -c synchronous_commit={fsync} -c full_page_writes={fsync} \
             -c max_connections=300 -c logging_collector=off -c ssl={ssl} >'{dir}/log' 2>&1 & pid=$!; \
             cat >/dev/null; kill -INT $pid; wait $pid; [ -e '{dir}/keep' ] || rm -rf '{dir}'",
            bin = self.bin.display(),
            data = data.display(),
            port = self.port,
            dir = self.dir.display(),
        );
        let mut sh = Command::new("sh");
        sh.args(["-c", &script]).stdin(Stdio::piped()).stdout(Stdio::null());
        let child = as_server_user(sh).spawn().map_err(|e| format!("postgres: {e}"))?;
        self.guard = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match postgres::Client::connect(&self.socket("postgres"), postgres::NoTls) {
                Ok(_) => return Ok(()),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => {
                    let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                    return Err(format!("not ready after 30 s: {e}\n{log}"));
                }
            }
        }
    }

    /// Database `name` over the server's Unix socket, which needs no TLS.
    fn socket(&self, name: &str) -> String {
        format!(
            "host={} port={} user={USER} password={PASSWORD} dbname={name}",
            self.dir.display(),
            self.port
        )
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database; returns its URL.
    pub fn database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin =
            postgres::Client::connect(&self.socket("postgres"), postgres::NoTls).expect("test server admin connection");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        self.url(&name)
    }

    /// Stops the server (fast shutdown), keeping its data for [`Server::restart`].
    pub fn stop(&mut self) {
        let _ = std::fs::File::create(self.dir.join("keep"));
        if let Some(mut child) = self.guard.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&mut self) -> Result<(), String> {
        let _ = std::fs::remove_file(self.dir.join("keep"));
        self.run()
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.guard.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}
