//! A real PostgreSQL server for the tests and benchmarks of `catalog-postgres` and the CLI.
//!
//! Where the server comes from, in order:
//! 1. `HAKIRI_TEST_POSTGRES_URL`, if set: a server someone else runs (nothing is started or
//!    stopped; every test uses its own project, so a shared database is fine).
//! 2. A container from `postgres:16-alpine` through testcontainers, when a Docker engine answers
//!    on `DOCKER_HOST` or `/var/run/docker.sock`.
//! 3. A throwaway server from this machine's `initdb` / `pg_ctl` (Debian package `postgresql`,
//!    `/usr/lib/postgresql/*/bin`, or `HAKIRI_PG_BINDIR`) in a temporary directory on a free
//!    loopback port. As root, the server runs as the `postgres` user (through `runuser`).
//!
//! If none is possible the caller panics with what to do — never a silent skip. Servers this
//! module starts stop when their [`Server`] is dropped, and in any case when the test process
//! ends: a watchdog process (`setsid sh`, reading a pipe from this process) stops them and
//! removes their files once the pipe closes, however the process ends.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How to get a server when none can be had here.
pub const HOW_TO_GET_ONE: &str =
    "set HAKIRI_TEST_POSTGRES_URL=postgres://user:password@host:port/db \
     to a server the tests may use, start a Docker engine, or install PostgreSQL \
     (`apt-get install postgresql`, which `scripts/setup` does)";

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a server came from.
#[derive(Debug)]
enum Origin {
    External,
    Container {
        id: String,
    },
    Local {
        bindir: PathBuf,
        data: PathBuf,
        user: Option<String>,
        log: PathBuf,
    },
}

/// A PostgreSQL server the tests can use.
#[derive(Debug)]
pub struct Server {
    url: String,
    origin: Origin,
    /// Closing it (drop, or the process's end) makes the watchdog stop the server.
    watchdog: Option<(Child, ChildStdin)>,
}

impl Server {
    /// The connection URL (a superuser on a throwaway server, `sslmode=disable` on loopback).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this process started the server (and so may restart it).
    pub fn is_owned(&self) -> bool {
        !matches!(self.origin, Origin::External)
    }

    /// Starts a server from the first source that works (see the module docs).
    ///
    /// # Panics
    /// With [`HOW_TO_GET_ONE`] when there is none.
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("HAKIRI_TEST_POSTGRES_URL") {
            return Self {
                url,
                origin: Origin::External,
                watchdog: None,
            };
        }
        Self::start_owned()
    }

    /// Starts a server this process controls (a container or a local one), ignoring
    /// `HAKIRI_TEST_POSTGRES_URL`.
    ///
    /// # Panics
    /// With [`HOW_TO_GET_ONE`] when there is none.
    pub fn start_owned() -> Self {
        let mut tried = Vec::new();
        if docker_answers() {
            match start_container() {
                Ok(server) => return server,
                Err(e) => tried.push(format!("Docker answered, but: {e}")),
            }
        } else {
            tried.push("no Docker engine answers".to_owned());
        }
        match start_local() {
            Ok(server) => server,
            Err(e) => {
                tried.push(e);
                panic!(
                    "no PostgreSQL server for the tests ({}). To get one: {HOW_TO_GET_ONE}",
                    tried.join("; ")
                )
            }
        }
    }

    /// Restarts the server (`pg_ctl restart -m fast`, or `docker restart`) and waits until it
    /// accepts connections again.
    ///
    /// # Errors
    /// When the server is not this process's, or the restart fails.
    pub fn restart(&self) -> Result<(), String> {
        match &self.origin {
            Origin::External => Err(format!(
                "this check restarts the server, so it needs one it controls; it does not use \
                 HAKIRI_TEST_POSTGRES_URL ({}). Unset it, or run the check where a Docker engine \
                 or `initdb` is available",
                self.url
            )),
            Origin::Container { id } => {
                run(Command::new("docker").args(["restart", "-t", "10", id]))?;
                wait_until_ready(&self.url)
            }
            Origin::Local {
                bindir,
                data,
                user,
                log,
            } => {
                let mut command = as_user(user.as_deref(), &bindir.join("pg_ctl"));
                command
                    .arg("-D")
                    .arg(data)
                    .arg("-l")
                    .arg(log)
                    .args(["-m", "fast", "-w", "-t", "60", "restart"]);
                run(&mut command)?;
                wait_until_ready(&self.url)
            }
        }
    }
}

impl Server {
    /// Stalls the whole server for `pause`, as a frozen machine would: SIGSTOP on the postmaster
    /// and every process it started (or `docker pause`, the cgroup freezer), then SIGCONT
    /// (`docker unpause`). Its clients' statements hang meanwhile and then carry on.
    ///
    /// # Errors
    /// When the server is not this process's, or its processes cannot be stopped.
    pub fn stall(&self, pause: Duration) -> Result<(), String> {
        match &self.origin {
            Origin::External => Err(format!(
                "this check stops the server, so it needs one it controls; it does not use \
                 HAKIRI_TEST_POSTGRES_URL ({}). Unset it",
                self.url
            )),
            Origin::Container { id } => {
                run(Command::new("docker").args(["pause", id]))?;
                std::thread::sleep(pause);
                run(Command::new("docker").args(["unpause", id]))
            }
            Origin::Local { data, .. } => {
                let postmaster = postmaster_pid(data)?;
                // The postmaster first, so that it starts no process while its children stop.
                let mut pids = vec![postmaster];
                pids.extend(children(postmaster));
                crate::faults::stall(&pids, pause)
            }
        }
    }
}

/// The postmaster's pid: the first line of `postmaster.pid` in the data directory.
fn postmaster_pid(data: &Path) -> Result<u32, String> {
    let file = data.join("postmaster.pid");
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    text.lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| format!("{} does not start with a pid", file.display()))
}

/// The processes whose parent is `parent`, from `/proc`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`: the command may hold spaces and parentheses, so the
            // fields are counted from the last `)`.
            let ppid: u32 = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// Ends (`pg_terminate_backend`) every session on `url` whose `application_name` is
/// `application` and that is running a statement or sits inside a transaction — a client cut
/// off mid-transaction, the server rolling back whatever it had not committed. Polls for such
/// sessions for up to `within` (clients spend most of their time between statements); returns
/// how many it ended, 0 if none was busy in that time.
///
/// # Errors
/// When `url` cannot be reached or the query fails.
pub async fn terminate_busy_sessions(
    url: &str,
    application: &str,
    within: Duration,
) -> Result<u64, String> {
    let pool = hakiri_catalog_postgres::PostgresConfig::default()
        .max_connections(1)
        .application_name("hakiri-nemesis")
        .connect(url)
        .await
        .map_err(|e| format!("the nemesis cannot connect to {url}: {e}"))?;
    let deadline = Instant::now() + within;
    let ended = loop {
        // Materialized, so that the planner cannot call `pg_terminate_backend` on a row
        // before the other conditions have ruled it out.
        let ended: i64 = sqlx::query_scalar(
            "WITH busy AS MATERIALIZED ( \
               SELECT pid FROM pg_stat_activity \
               WHERE application_name = $1 AND pid <> pg_backend_pid() \
                 AND state IN ('active', 'idle in transaction')) \
             SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM busy",
        )
        .bind(application)
        .fetch_one(&pool)
        .await
        .map_err(|e| format!("pg_terminate_backend on {url}: {e}"))?;
        if ended > 0 || Instant::now() > deadline {
            break ended;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    pool.close().await;
    Ok(u64::try_from(ended).unwrap_or(0))
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// One server for the whole test binary, migrated once. Started on a thread of its own, so it
/// can be called from inside any test's runtime.
///
/// # Panics
/// With [`HOW_TO_GET_ONE`] when there is none, or if the migrations fail.
pub fn shared() -> &'static Server {
    static SHARED: OnceLock<Result<Server, String>> = OnceLock::new();
    let server = SHARED.get_or_init(|| {
        std::thread::spawn(|| {
            let server = Server::start();
            migrate(server.url())?;
            Ok(server)
        })
        .join()
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "starting the server panicked".to_owned())
        })
        .and_then(|r| r)
    });
    match server {
        Ok(server) => server,
        Err(message) => panic!("{message}"),
    }
}

/// A pool of 4 connections to the [`shared`] server, as the CLI connects.
///
/// # Panics
/// With [`HOW_TO_GET_ONE`] when there is no server or it refuses the connection.
pub async fn shared_pool() -> hakiri_catalog_postgres::PgPool {
    let url = shared().url();
    hakiri_catalog_postgres::PostgresConfig::default()
        .max_connections(4)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}. {HOW_TO_GET_ONE}"))
}

/// A migrated server of this process's own ([`Server::start_owned`]), started off the runtime:
/// for checks that restart, stall or reshape the server, which a shared one must not see.
///
/// # Panics
/// With [`HOW_TO_GET_ONE`] when there is none, or if the migrations fail.
pub async fn start_owned_migrated() -> Server {
    tokio::task::spawn_blocking(|| {
        let server = Server::start_owned();
        if let Err(e) = migrate(server.url()) {
            panic!("{e}");
        }
        server
    })
    .await
    .unwrap_or_else(|e| panic!("starting a server failed: {e}"))
}

/// Applies the catalog's migrations on `url`, from a runtime of its own (call it off any runtime).
///
/// # Errors
/// Connection or migration failures, with the URL.
pub fn migrate(url: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let pool = hakiri_catalog_postgres::PostgresConfig::default()
            .max_connections(1)
            .connect(url)
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}. {HOW_TO_GET_ONE}"))?;
        hakiri_catalog_postgres::migrate(&pool)
            .await
            .map_err(|e| format!("migrating {url} failed: {e}"))?;
        pool.close().await;
        Ok(())
    })
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A command run as `user` (through `runuser`) when given, else as this process's user.
fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Starts `sh` in a session of its own that runs `cleanup` once this process's end of its stdin
/// closes — on drop, on exit, or when this process is killed.
fn watchdog(cleanup: &str) -> Result<(Child, ChildStdin), String> {
    let mut child = Command::new("setsid")
        .args(["sh", "-c", &format!("cat >/dev/null; {cleanup}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the server's watchdog: {e}"))?;
    let stdin = child.stdin.take().ok_or("the watchdog has no stdin")?;
    Ok((child, stdin))
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Polls `url` until a connection succeeds.
fn wait_until_ready(url: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + START_TIMEOUT;
    runtime.block_on(async {
        loop {
            let attempt = hakiri_catalog_postgres::PostgresConfig::default()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(2))
                .connect(url)
                .await;
            match attempt {
                Ok(pool) => {
                    pool.close().await;
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("{url} did not accept connections: {e}"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
}

// Docker, through testcontainers.

/// Whether a Docker engine answers `GET /_ping` on `DOCKER_HOST` or the default socket.
fn docker_answers() -> bool {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let timeout = Some(Duration::from_secs(2));
    let mut answer = String::new();
    let ok = if let Some(addr) = host.strip_prefix("tcp://") {
        TcpStream::connect(addr).ok().and_then(|mut s| {
            s.set_read_timeout(timeout).ok()?;
            s.write_all(request).ok()?;
            s.read_to_string(&mut answer).ok()
        })
    } else {
        let path = host
            .strip_prefix("unix://")
            .unwrap_or("/var/run/docker.sock")
            .to_owned();
        UnixStream::connect(path).ok().and_then(|mut s| {
            s.set_read_timeout(timeout).ok()?;
            s.write_all(request).ok()?;
            s.read_to_string(&mut answer).ok()
        })
    };
    ok.is_some() && answer.starts_with("HTTP/1.") && answer.contains(" 200 ")
}

fn start_container() -> Result<Server, String> {
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::SyncRunner;
    use testcontainers::{GenericImage, ImageExt};

    let container = GenericImage::new("postgres", "16-alpine")
        .with_exposed_port(5432.tcp())
        .with_wait_for(WaitFor::message_on_stderr(
            "database system is ready to accept connections",
        ))
        .with_env_var("POSTGRES_USER", "hakiri")
        .with_env_var("POSTGRES_PASSWORD", "hakiri")
        .with_env_var("POSTGRES_DB", "hakiri")
        .start()
        .map_err(|e| format!("cannot start a postgres container: {e}"))?;
    let port = container
        .get_host_port_ipv4(5432)
        .map_err(|e| format!("the postgres container has no port: {e}"))?;
    let id = container.id().to_owned();
    // The watchdog removes the container when this process ends; the handle must not remove it
    // earlier (a shared server lives in a static, which is never dropped).
    std::mem::forget(container);
    let watchdog = watchdog(&format!("docker rm -f -v {}", shell_quote(&id)))?;
    let url = format!("postgres://hakiri:hakiri@127.0.0.1:{port}/hakiri?sslmode=disable");
    wait_until_ready(&url)?;
    Ok(Server {
        url,
        origin: Origin::Container { id },
        watchdog: Some(watchdog),
    })
}

// A local server from initdb / pg_ctl.

/// The directory holding `initdb` and `pg_ctl`.
fn bindir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("HAKIRI_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    // Debian's layout: the newest major version first.
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
        .ok_or_else(|| "no initdb/pg_ctl found (the `postgresql` package is not installed)".into())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn start_local() -> Result<Server, String> {
    let bindir = bindir()?;
    // The server refuses to run as root: run it as `postgres` (the Debian package's user).
    let user = if is_root() {
        let exists = Command::new("id")
            .arg("postgres")
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            return Err(
                "running as root, and there is no `postgres` user to run the server as \
                        (install the `postgresql` package)"
                    .into(),
            );
        }
        Some("postgres".to_owned())
    } else {
        None
    };
    let dir = tempfile::Builder::new()
        .prefix("hakiri-pg-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?
        .keep();
    let data = dir.join("data");
    let log = dir.join("server.log");
    if let Some(user) = &user {
        run(Command::new("chown").arg(user).arg(&dir))?;
    }
    // The watchdog first: whatever happens next, the directory goes when this process ends.
    let stop = format!(
        "{} -D {} -m immediate stop; rm -rf {}",
        match &user {
            Some(user) => format!(
                "runuser -u {user} -- {}",
                shell_quote(&bindir.join("pg_ctl").to_string_lossy())
            ),
            None => shell_quote(&bindir.join("pg_ctl").to_string_lossy()),
        },
        shell_quote(&data.to_string_lossy()),
        shell_quote(&dir.to_string_lossy())
    );
    let watchdog = watchdog(&format!("{stop} >/dev/null 2>&1"))?;
    let mut initdb = as_user(user.as_deref(), &bindir.join("initdb"));
    initdb.arg("-D").arg(&data).args([
        "-U",
        "hakiri",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    run(&mut initdb)?;
    let mut last_error = String::new();
    for _ in 0..3 {
        let port = free_port()?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} \
             -c max_connections=300 -c shared_buffers=128MB",
            dir.display()
        );
        let mut pg_ctl = as_user(user.as_deref(), &bindir.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "60", "start"]);
        match run(&mut pg_ctl) {
            Ok(()) => {
                let url = format!("postgres://hakiri@127.0.0.1:{port}/postgres?sslmode=disable");
                wait_until_ready(&url)?;
                return Ok(Server {
                    url,
                    origin: Origin::Local {
                        bindir,
                        data,
                        user,
                        log,
                    },
                    watchdog: Some(watchdog),
                });
            }
            // Most likely another process took the port in between: try another.
            Err(e) => {
                let server_log = std::fs::read_to_string(&log).unwrap_or_default();
                last_error = format!("{e}\n{server_log}");
            }
        }
    }
    Err(format!(
        "the local PostgreSQL server did not start: {last_error}"
    ))
}
