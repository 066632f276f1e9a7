//! A running `hakiri serve`, started as a script would start it (`--output json serve`, then the
//! one `{url, token, console}` line it prints once listening), that never outlives the test process.
//!
//! The server runs under a shell watchdog that reads a pipe from the test process and sends the
//! server SIGTERM when the pipe closes: when [`Served::stop`] or the drop closes it, and when the
//! test process ends however it ends — so a server kept in a `static` for a whole test binary
//! (which is never dropped) stops with it too. The watchdog then removes the directories it was
//! given and exits with the server's status.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the server may take to stop once told to.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `"$@"` (the server) in the background with its stderr in `$HAKIRI_SERVE_LOG`. It reads
/// its stdin (the pipe from the test process) on a copied descriptor — an asynchronous list's
/// own stdin is /dev/null — and sends the server SIGTERM when the pipe closes. It exits when the
/// server does, with its status, after removing `$HAKIRI_SERVE_CLEANUP`.
const WATCHDOG: &str = r#"exec 3<&0
"$@" 3<&- </dev/null 2>"$HAKIRI_SERVE_LOG" &
pid=$!
{ read -r _ <&3; kill -TERM "$pid" 2>/dev/null; } &
watcher=$!
wait "$pid"
status=$?
kill "$watcher" 2>/dev/null
for dir in $HAKIRI_SERVE_CLEANUP; do rm -rf "$dir"; done
exit "$status"
"#;

/// A running `hakiri serve`.
pub struct Served {
    watchdog: Child,
    /// Closing it tells the watchdog to stop the server.
    stdin: Option<ChildStdin>,
    /// Kept open: the server's stdout is this pipe.
    _stdout: BufReader<ChildStdout>,
    /// `http://127.0.0.1:{port}`, without a trailing slash.
    pub url: String,
    pub port: u16,
    /// The launch token (empty with `--grants`).
    pub token: String,
    /// The console's URL, as printed (with `#token=` for a launch token).
    pub console: String,
    log: PathBuf,
    /// Holds the log.
    _logs: tempfile::TempDir,
}

impl Served {
    /// Starts `command` — a `hakiri` command from [`super::hakiri`] with the global options and
    /// `--output json serve …` added — and returns once it prints that it listens. `cleanup`
    /// is removed when the server exits (for a server that lives as long as the process).
    ///
    /// # Panics
    /// If the server exits or prints something else instead, with its log.
    pub fn start(command: &Command, cleanup: &[&Path]) -> Self {
        let logs = tempfile::tempdir().expect("a directory for the server's log");
        let log = logs.path().join("serve.log");
        let mut cleanup: Vec<String> = cleanup.iter().map(|p| p.display().to_string()).collect();
        cleanup.push(logs.path().display().to_string());
        // A session of its own: a Ctrl-C meant for the test runner reaches the server through
        // the watchdog, in order, not both at once.
        let mut watchdog = Command::new("setsid");
        watchdog
            .args(["sh", "-c", WATCHDOG, "hakiri-serve-watchdog"])
            .arg(command.get_program())
            .args(command.get_args())
            .env("HAKIRI_SERVE_LOG", &log)
            .env("HAKIRI_SERVE_CLEANUP", cleanup.join(" "))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in command.get_envs() {
            match value {
                Some(value) => watchdog.env(name, value),
                None => watchdog.env_remove(name),
            };
        }
        let mut watchdog = watchdog.spawn().expect("start hakiri serve's watchdog");
        let stdin = watchdog.stdin.take();
        let mut stdout = BufReader::new(watchdog.stdout.take().expect("the watchdog's stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let started: Option<Value> = serde_json::from_str(&line).ok();
        let Some(url) = started
            .as_ref()
            .and_then(|s| s["url"].as_str())
            .map(|u| u.trim_end_matches('/').to_owned())
        else {
            let _ = watchdog.wait();
            panic!(
                "hakiri serve printed {line:?} ({read:?}) instead of its URL; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let port = url
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected URL {url}"));
        let printed = |field: &str| {
            started
                .as_ref()
                .and_then(|s| s[field].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        Served {
            watchdog,
            stdin,
            _stdout: stdout,
            url,
            port,
            token: printed("token"),
            console: printed("console"),
            log,
            _logs: logs,
        }
    }

    /// What the server has written to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server with SIGTERM and asserts that it stopped cleanly, in time.
    pub fn stop(mut self) {
        let log = self.log_text();
        match self.wait_for_exit() {
            Some(status) => assert!(status.success(), "hakiri serve ended with {status}:\n{log}"),
            None => panic!("hakiri serve ignored SIGTERM for {STOP_TIMEOUT:?}:\n{log}"),
        }
    }

    /// Closes the watchdog's pipe and waits for the server's status; `None` if it did not stop
    /// in time (then the watchdog's session, the server included, is killed).
    fn wait_for_exit(&mut self) -> Option<std::process::ExitStatus> {
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.watchdog.try_wait().ok().flatten() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // setsid made the watchdog its session's and process group's leader.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.watchdog.id())])
            .status();
        let _ = self.watchdog.wait();
        None
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            self.wait_for_exit();
        }
    }
}
