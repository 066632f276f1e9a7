//! The catalog Worker in a real, local `workerd` (the binary the npm package `wrangler` ships),
//! for tests and benchmarks.
//!
//! - [`build_worker`] runs `scripts/build-worker` once per process (a file lock inside the script
//!   serialises processes) and returns `catalog-do/build/`.
//! - [`Workerd::start`] serves that build on a free loopback port, with Durable Object SQLite
//!   storage on disk in [`WorkerdOptions::persist`], the `HAKIRI_TOKENS` grants and, if asked,
//!   the test hooks; it returns once the Worker answers HTTP. Dropping it (or [`Workerd::stop`])
//!   stops workerd; if the test process dies first, workerd follows it (a watchdog on a pipe).
//!   [`Workerd::restart`] stops it (gracefully or with SIGKILL) and starts it again on the same
//!   data and port: the host restarted under its clients.
//! - [`shared`]: one workerd for a whole test binary, with [`ADMIN_TOKEN`] on every project.
//!
//! Missing tools are a failure that says to run `scripts/setup`, never a skip.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The token the shared instance grants `admin` on every project.
pub const ADMIN_TOKEN: &str = "hakiri-test-admin-token";

/// How long workerd may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the test kit sits in the workspace")
        .to_path_buf()
}

fn script(name: &str) -> Command {
    let mut command = Command::new("bash");
    command.arg(root().join("scripts").join(name));
    command
}

/// Builds the worker (`scripts/build-worker`) once per process; returns `catalog-do/build/`.
///
/// # Panics
/// If the tools are missing (run `scripts/setup`) or the build fails; the message carries the
/// build's output.
pub fn build_worker() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let output = script("build-worker")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run scripts/build-worker: {e}"))?;
        if output.status.success() {
            Ok(root().join("catalog-do").join("build"))
        } else {
            Err(format!(
                "scripts/build-worker failed ({}); if tools are missing, run scripts/setup.\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    match built {
        Ok(dir) => dir,
        Err(message) => panic!("{message}"),
    }
}

/// The workerd binary installed by `scripts/setup`.
///
/// # Panics
/// If it is not installed, saying to run `scripts/setup`.
pub fn workerd_bin() -> PathBuf {
    let output = script("worker-tools")
        .args(["--where", "workerd"])
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/worker-tools");
    assert!(
        output.status.success(),
        "workerd is not installed: run scripts/setup ({})",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// How to start workerd.
#[derive(Debug, Clone)]
pub struct WorkerdOptions {
    /// The `HAKIRI_TOKENS` secret: a JSON list of grants.
    pub tokens: String,
    /// Sets `HAKIRI_TEST_HOOKS=1` (fault injection through `x-hakiri-fail-at`).
    pub test_hooks: bool,
    /// Where the Durable Objects keep their SQLite files; reuse it to restart on the same data.
    pub persist: PathBuf,
    /// Deletes `persist` when workerd exits (for an instance that lives as long as the process).
    pub remove_persist_on_exit: bool,
}

impl WorkerdOptions {
    /// Grants as given, test hooks on, data in `persist`.
    pub fn new(tokens: impl Into<String>, persist: impl Into<PathBuf>) -> Self {
        Self {
            tokens: tokens.into(),
            test_hooks: true,
            persist: persist.into(),
            remove_persist_on_exit: false,
        }
    }
}

/// The name of [`ADMIN_TOKEN`]'s grant: the Worker audits operator requests under it, whatever
/// the client claims (ADR 0023), so it is the contract suite's operator
/// (`hakiri_contract::operator()`), whose checks assert the actor they sent.
pub const ADMIN_NAME: &str = "contract-operator";

/// The grants of [`shared`]: [`ADMIN_TOKEN`] is `admin` on every project, named [`ADMIN_NAME`].
pub fn admin_grants() -> String {
    format!(r#"[{{"name":"{ADMIN_NAME}","token":"{ADMIN_TOKEN}","projects":"*","role":"admin"}}]"#)
}

/// How [`Workerd::restart`] stops workerd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGTERM: workerd stops accepting and lets requests in flight finish.
    Graceful,
    /// SIGKILL: requests in flight die with it, as in a crash of the host.
    Kill,
}

/// A running workerd serving the catalog Worker.
pub struct Workerd {
    options: WorkerdOptions,
    watchdog: Child,
    /// Closing it tells the watchdog to stop workerd.
    stdin: Option<ChildStdin>,
    workerd_pid: u32,
    port: u16,
    log: PathBuf,
    _config: tempfile::TempDir,
}

impl std::fmt::Debug for Workerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workerd")
            .field("port", &self.port)
            .field("pid", &self.workerd_pid)
            .finish()
    }
}

/// Escapes text for a Cap'n Proto string literal.
fn capnp_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The config; `embed` paths are relative to the config file, whose directory holds a copy of
/// the build (a copy also keeps a concurrent rebuild from changing a running instance).
fn config(options: &WorkerdOptions, port: u16) -> String {
    let persist = capnp_string(&options.persist.display().to_string());
    let tokens = capnp_string(&options.tokens);
    let hooks = if options.test_hooks { "1" } else { "0" };
    format!(
        r#"using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .catalog),
    (name = "disk", disk = (path = {persist}, writable = true)),
  ],
  sockets = [(name = "http", address = "127.0.0.1:{port}", http = (), service = "main")],
);

const catalog :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed "index.js"),
    (name = "index_bg.wasm", wasm = embed "index_bg.wasm"),
  ],
  compatibilityDate = "2025-09-01",
  bindings = [
    (name = "HAKIRI_CATALOG", durableObjectNamespace = "HakiriCatalog"),
    (name = "HAKIRI_TOKENS", text = {tokens}),
    (name = "HAKIRI_TEST_HOOKS", text = "{hooks}"),
  ],
  durableObjectNamespaces = [
    (className = "HakiriCatalog", uniqueKey = "hakiri-catalog", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "disk"),
);
"#
    )
}

/// Runs workerd under a shell watchdog that prints workerd's pid. The watchdog reads its stdin
/// (a pipe from this process) on a copied descriptor — an asynchronous list's own stdin is
/// /dev/null — and stops workerd when the pipe closes: when the harness drops it, or when the
/// test process dies, so no workerd outlives its tests: SIGTERM, then SIGKILL if workerd is still
/// draining 10 s later (its graceful stop waits for open event streams, which a stream whose
/// client is gone notices only when it next writes). It exits when workerd does, removing
/// `$HAKIRI_WORKERD_CLEANUP` (the config directory, and the data of a process-long instance);
/// quietly, since the shell would otherwise print "Killed" into the test's output after every
/// [`Workerd::restart`] by SIGKILL.
const WATCHDOG: &str = r#"exec 3<&0
"$@" 3<&- </dev/null >"$HAKIRI_WORKERD_LOG" 2>&1 &
pid=$!
echo "$pid"
{ read -r _ <&3; kill -TERM "$pid" 2>/dev/null; sleep 10 >/dev/null 2>&1; kill -KILL "$pid" 2>/dev/null; } &
watcher=$!
wait "$pid" 2>/dev/null
status=$?
kill "$watcher" 2>/dev/null
for dir in $HAKIRI_WORKERD_CLEANUP; do rm -rf "$dir"; done
exit "$status"
"#;

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Whether something on `port` answers HTTP.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /ready HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 ")
}

impl Workerd {
    /// Builds the worker if needed and starts workerd with `options`; returns once it answers.
    ///
    /// # Panics
    /// If the tools are missing (the message says to run `scripts/setup`) or workerd does not
    /// come up (the message carries its log).
    pub fn start(options: &WorkerdOptions) -> Self {
        Self::launch(options, None)
    }

    /// Stops workerd as `how` says and starts it again on the same data and the same port, so
    /// that clients need not be told: a restart of the host. Returns once it answers again.
    ///
    /// # Panics
    /// If the instance removes its data on exit (there would be nothing to restart on), or
    /// workerd does not come up again on its port (the message carries its log).
    pub fn restart(self, how: Shutdown) -> Self {
        assert!(
            !self.options.remove_persist_on_exit,
            "restarting a workerd whose data goes when it exits"
        );
        let (options, port) = (self.options.clone(), self.port);
        if how == Shutdown::Kill {
            if let Err(e) = crate::faults::signal(self.workerd_pid, rustix::process::Signal::KILL) {
                panic!("cannot kill workerd: {e}; its log:\n{}", self.log_text());
            }
        }
        drop(self);
        Self::launch(&options, Some(port))
    }

    /// Starts workerd on `port`, or on a free port when `None`.
    fn launch(options: &WorkerdOptions, port: Option<u16>) -> Self {
        let build = build_worker();
        let bin = workerd_bin();
        fs::create_dir_all(&options.persist).expect("create the persist directory");
        let mut last_log = String::new();
        // A port found free can be taken before workerd binds it: try a few. A given port can
        // be held for a moment by the instance that just stopped: try it again a little later.
        for attempt in 0..5 {
            if attempt > 0 && port.is_some() {
                thread::sleep(Duration::from_millis(500));
            }
            let dir = tempfile::tempdir().expect("a temporary directory for the workerd config");
            let port = port.unwrap_or_else(free_port);
            let config_path = dir.path().join("config.capnp");
            fs::write(&config_path, config(options, port)).expect("write config.capnp");
            for file in ["index.js", "index_bg.wasm"] {
                fs::copy(build.join(file), dir.path().join(file)).expect("copy the worker build");
            }
            let log = dir.path().join("workerd.log");
            let mut cleanup = dir.path().display().to_string();
            if options.remove_persist_on_exit {
                cleanup = format!("{cleanup} {}", options.persist.display());
            }
            let mut watchdog = Command::new("sh")
                .arg("-c")
                .arg(WATCHDOG)
                .arg("hakiri-workerd-watchdog")
                .arg(&bin)
                .arg("serve")
                .arg(&config_path)
                .arg("--experimental")
                .env("HAKIRI_WORKERD_LOG", &log)
                .env("HAKIRI_WORKERD_CLEANUP", cleanup)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start sh for workerd");
            let stdin = watchdog.stdin.take();
            let mut pid_line = String::new();
            let stdout = watchdog.stdout.take().expect("the watchdog's stdout");
            BufReader::new(stdout)
                .read_line(&mut pid_line)
                .expect("read workerd's pid");
            let workerd_pid = pid_line.trim().parse().expect("workerd's pid");
            let mut workerd = Workerd {
                options: options.clone(),
                watchdog,
                stdin,
                workerd_pid,
                port,
                log,
                _config: dir,
            };
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if answers(port) {
                    return workerd;
                }
                if workerd.watchdog.try_wait().ok().flatten().is_some() || Instant::now() > deadline
                {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            last_log = workerd.log_text();
            drop(workerd);
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("workerd did not start serving the catalog worker; its log:\n{last_log}");
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What workerd has printed so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops workerd and waits for it to exit.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Workerd {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.watchdog.try_wait().ok().flatten().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // The watchdog did not manage: kill both.
        let _ = Command::new("kill")
            .args(["-KILL", &self.workerd_pid.to_string()])
            .status();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// One workerd for the whole test binary, with [`admin_grants`] and the test hooks, on data in a
/// temporary directory. It stops when the test process exits.
pub fn shared() -> &'static Workerd {
    static SHARED: OnceLock<Workerd> = OnceLock::new();
    SHARED.get_or_init(|| {
        // Statics are never dropped: the watchdog removes the data when workerd exits.
        let persist = tempfile::tempdir().expect("a temporary directory").keep();
        let mut options = WorkerdOptions::new(admin_grants(), persist);
        options.remove_persist_on_exit = true;
        Workerd::start(&options)
    })
}
