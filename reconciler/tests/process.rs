//! The process core on real processes: `hakiri-fake-tap` scripted to do what real taps do
//! rarely (ignore SIGTERM, leave a grandchild, print huge lines, fail).

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use hakiri_reconciler::process::{ChildProcess, ProcessError, ProcessSpec};
use hakiri_reconciler::ConnectorError;
use serde_json::{json, Value};

const FAKE_TAP: &str = env!("CARGO_BIN_EXE_hakiri-fake-tap");

/// How long anything here may take before the test fails instead of hanging: a liveness bound.
const LIVENESS: Duration = Duration::from_secs(20);

fn tap(steps: Value) -> ProcessSpec {
    ProcessSpec::new(FAKE_TAP, "run-0001")
        .arg("--script-json")
        .arg(steps.to_string())
}

fn spawn(spec: ProcessSpec) -> ChildProcess {
    ChildProcess::spawn(spec).expect("the fake tap starts")
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIVENESS, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIVENESS:?}"))
}

/// Reads stdout to its end, each line as JSON.
async fn json_lines(child: &mut ChildProcess) -> Vec<Value> {
    let mut lines = Vec::new();
    while let Some(line) = within("reading stdout", child.next_line())
        .await
        .expect("a line")
    {
        lines.push(serde_json::from_slice(&line).expect("a JSON line"));
    }
    lines
}

/// Reads one stdout line, as JSON.
async fn next_json(child: &mut ChildProcess) -> Value {
    let line = within("reading stdout", child.next_line())
        .await
        .expect("a line")
        .expect("not the end of stdout");
    serde_json::from_slice(&line).expect("a JSON line")
}

/// Whether `pid` is a running process (a zombie waiting to be reaped is not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => !matches!(
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next()),
            Some('Z' | 'X') | None
        ),
        Err(_) => false,
    }
}

async fn gone(pid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + LIVENESS;
    while alive(pid) {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

async fn read_pid(path: &Path) -> u32 {
    within("the grandchild's pid file", async {
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                return text.trim().parse().expect("a pid");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

fn state(n: u64) -> Value {
    json!({"type": "STATE", "value": {"bookmarks": {"orders": {"n": n}}}})
}

/// Stdout lines arrive whole and in order, including malformed ones, and a clean exit passes.
#[tokio::test]
async fn lines_are_read_in_order() {
    let record = json!({"type": "RECORD", "stream": "orders", "record": {"id": 1}});
    let mut child = spawn(tap(json!([
        {"json": record},
        {"print": "not json {"},
        {"json": state(1)},
    ])));
    let mut lines = Vec::new();
    while let Some(line) = within("reading", child.next_line()).await.expect("a line") {
        lines.push(String::from_utf8(line).expect("utf-8"));
    }
    assert_eq!(
        lines,
        [
            record.to_string(),
            "not json {".to_owned(),
            state(1).to_string()
        ]
    );
    let exit = within("wait", child.wait()).await.expect("exit");
    assert!(
        exit.success() && !exit.terminated && !exit.killed,
        "{exit:?}"
    );
    exit.check().expect("a clean exit passes");
}

/// A line over the limit is a typed error naming the limit; reading goes on after it.
#[tokio::test]
async fn a_line_over_the_limit_is_a_typed_error() {
    let mut child = spawn(
        tap(json!([{"json": state(1)}, {"huge": 200_000}, {"json": state(2)}]))
            .max_line_bytes(1000),
    );
    assert_eq!(next_json(&mut child).await, state(1), "the line before");
    let error = within("reading", child.next_line())
        .await
        .expect_err("the huge line");
    match &error {
        ProcessError::LineTooLong {
            line, limit, read, ..
        } => {
            assert_eq!((*line, *limit), (2, 1000));
            assert!(*read > 1000, "read {read}");
        }
        other => panic!("expected LineTooLong, got {other:?}"),
    }
    assert!(error.to_string().contains("limit of 1000 bytes"), "{error}");
    assert!(
        matches!(
            ConnectorError::from(error),
            ConnectorError::Failed {
                retryable: false,
                ..
            }
        ),
        "a tap printing oversized lines will print them again: permanent"
    );
    assert_eq!(json_lines(&mut child).await, [state(2)], "the line after");
    assert!(within("wait", child.wait()).await.expect("exit").success());
}

/// Stderr goes to a tail that keeps the last lines within its bytes.
#[tokio::test]
async fn stderr_keeps_a_bounded_tail() {
    let mut child = spawn(
        tap(json!([
            {"stderr": "first line", "times": 1},
            {"stderr": "INFO noise", "times": 500},
            {"stderr": "CRITICAL last line"},
        ]))
        .stderr_tail_bytes(200),
    );
    let exit = within("wait", child.wait()).await.expect("exit");
    assert!(exit.stderr_tail.len() <= 200, "{:?}", exit.stderr_tail);
    assert!(
        exit.stderr_tail.ends_with("INFO noise\nCRITICAL last line"),
        "{:?}",
        exit.stderr_tail
    );
    assert!(!exit.stderr_tail.contains("first line"));
}

/// A non-zero exit fails with the exit code and the end of stderr in the message.
#[tokio::test]
async fn a_non_zero_exit_is_reported_with_the_stderr_tail() {
    let mut child = spawn(tap(json!([
        {"stderr": "CRITICAL cannot reach the API"},
        {"exit": 3},
    ])));
    assert_eq!(json_lines(&mut child).await, Vec::<Value>::new());
    let exit = within("wait", child.wait()).await.expect("exit");
    assert_eq!(exit.status.code(), Some(3));
    let error = exit.check().expect_err("exit 3 fails");
    let message = error.to_string();
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(
        message.contains("CRITICAL cannot reach the API"),
        "{message}"
    );
}

/// A tap that honours SIGTERM prints its final STATE, which the caller reads, and exits before
/// the grace period ends.
#[tokio::test]
async fn terminate_collects_the_final_state_of_a_tap_that_honours_sigterm() {
    let mut child = spawn(tap(json!([
        {"on_sigterm": {"json": [state(2)], "exit": 0}},
        {"json": state(1)},
        {"sleep_ms": 600_000},
    ])));
    assert_eq!(next_json(&mut child).await, state(1));
    child.terminate(Duration::from_secs(600));
    assert_eq!(json_lines(&mut child).await, [state(2)], "the final STATE");
    let exit = within("wait", child.wait()).await.expect("exit");
    assert!(exit.terminated && !exit.killed, "{exit:?}");
    assert_eq!(exit.status.code(), Some(0));
}

/// A tap that ignores SIGTERM is killed with its group once the grace period has passed.
#[tokio::test]
async fn stop_kills_a_tap_that_ignores_sigterm_after_the_grace() {
    use std::os::unix::process::ExitStatusExt as _;
    let mut child = spawn(tap(json!([
        {"on_sigterm": "ignore"},
        {"json": state(1)},
        {"sleep_ms": 600_000},
    ])));
    assert_eq!(next_json(&mut child).await, state(1));
    let pid = child.id();
    let exit = within("stop", child.stop(Duration::from_millis(300)))
        .await
        .expect("exit");
    assert!(exit.terminated && exit.killed, "{exit:?}");
    assert_eq!(exit.status.signal(), Some(9), "{exit:?}");
    assert!(gone(pid).await);
}

/// Stopping reaches the whole group: a grandchild that ignores SIGTERM is gone afterwards.
#[tokio::test]
async fn a_grandchild_is_gone_after_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    let mut child = spawn(tap(json!([
        {"on_sigterm": {"json": [], "exit": 0}},
        {"grandchild": {"pid_file": pid_file, "ignore_sigterm": true}},
        {"sleep_ms": 600_000},
    ])));
    let grandchild = read_pid(&pid_file).await;
    assert!(alive(grandchild), "the grandchild runs before the stop");
    let exit = within("stop", child.stop(Duration::from_secs(600)))
        .await
        .expect("exit");
    assert_eq!(
        exit.status.code(),
        Some(0),
        "the tap itself honoured SIGTERM"
    );
    assert!(gone(grandchild).await, "grandchild {grandchild} still runs");
}

/// A tap that exits by itself takes what it left in its group with it, and a grandchild
/// holding stdout open does not keep the caller from seeing the end.
#[tokio::test]
async fn a_grandchild_is_gone_after_the_tap_exits_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    let mut child = spawn(tap(json!([
        {"grandchild": {"pid_file": pid_file, "ignore_sigterm": true}},
        {"json": state(1)},
    ])));
    let grandchild = read_pid(&pid_file).await;
    assert_eq!(json_lines(&mut child).await, [state(1)]);
    let exit = within("wait", child.wait()).await.expect("exit");
    assert!(exit.success() && !exit.terminated, "{exit:?}");
    assert!(gone(grandchild).await, "grandchild {grandchild} still runs");
}

/// Dropping the handle (a cancelled run) kills the tap and its grandchild.
#[tokio::test]
async fn dropping_the_handle_kills_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    let child = spawn(tap(json!([
        {"on_sigterm": "ignore"},
        {"grandchild": {"pid_file": pid_file, "ignore_sigterm": true}},
        {"sleep_ms": 600_000},
    ])));
    let grandchild = read_pid(&pid_file).await;
    let pid = child.id();
    assert!(alive(pid) && alive(grandchild));
    drop(child);
    assert!(gone(pid).await, "tap {pid} still runs");
    assert!(gone(grandchild).await, "grandchild {grandchild} still runs");
}

/// The child sees only the base variables, the allow-listed ones and the explicit ones.
#[tokio::test]
async fn the_child_sees_a_minimal_environment() {
    // Cargo sets these for the test process; they must not leak to the child unless asked.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
    let mut child = spawn(
        tap(json!([{"env": true}]))
            .inherit_env("CARGO_PKG_NAME")
            .env("TAP_TOKEN", "secret"),
    );
    let lines = json_lines(&mut child).await;
    let env = lines[0].as_object().expect("an object");
    let mut names: Vec<&str> = env.keys().map(String::as_str).collect();
    names.retain(|n| !hakiri_reconciler::process::BASE_ENV.contains(n));
    assert_eq!(names, ["CARGO_PKG_NAME", "TAP_TOKEN"]);
    assert_eq!(env["TAP_TOKEN"], "secret");
    assert_eq!(env["CARGO_PKG_NAME"], "hakiri-reconciler");
    assert!(env.contains_key("PATH"));
    within("wait", child.wait()).await.expect("exit");
}

/// A piped stdin carries lines to the child (a Singer target's input); closing it ends them.
#[tokio::test]
async fn a_piped_stdin_feeds_the_child() {
    use tokio::io::AsyncWriteExt as _;
    let mut child = spawn(ProcessSpec::new("cat", "run-0001").stdin_piped());
    let mut stdin = child.take_stdin().expect("a stdin pipe");
    assert!(child.take_stdin().is_none(), "taken once");
    stdin
        .write_all(format!("{}\n{}\n", state(1), state(2)).as_bytes())
        .await
        .expect("write");
    drop(stdin);
    assert_eq!(json_lines(&mut child).await, [state(1), state(2)]);
    assert!(within("wait", child.wait()).await.expect("exit").success());
}

/// Without a pipe, stdin is empty: a program reading it sees its end at once.
#[tokio::test]
async fn stdin_is_closed_by_default() {
    let mut child = spawn(ProcessSpec::new("cat", "run-0001"));
    assert!(child.take_stdin().is_none());
    assert_eq!(json_lines(&mut child).await, Vec::<Value>::new());
    assert!(within("wait", child.wait()).await.expect("exit").success());
}

/// A program that does not exist fails to spawn, permanently.
#[tokio::test]
async fn a_missing_program_is_a_permanent_spawn_error() {
    let error = ChildProcess::spawn(ProcessSpec::new("/nonexistent/tap-nothing", "run-0001"))
        .expect_err("no such program");
    assert!(matches!(error, ProcessError::Spawn { .. }), "{error:?}");
    assert!(error.to_string().contains("/nonexistent/tap-nothing"));
    assert!(matches!(
        ConnectorError::from(error),
        ConnectorError::Failed {
            retryable: false,
            ..
        }
    ));
}

/// SIGTERM goes to the whole group, not only the tap: a grandchild that honours it ends while
/// the tap that ignores it still runs inside its grace period.
#[tokio::test]
async fn terminate_signals_the_whole_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    let mut child = spawn(tap(json!([
        {"on_sigterm": "ignore"},
        {"grandchild": {"pid_file": pid_file, "ignore_sigterm": false}},
        {"sleep_ms": 600_000},
    ])));
    let grandchild = read_pid(&pid_file).await;
    child.terminate(Duration::from_secs(600));
    assert!(
        gone(grandchild).await,
        "grandchild {grandchild} got no SIGTERM"
    );
    assert!(
        alive(child.id()),
        "the tap ignores SIGTERM and its grace runs"
    );
    child.kill();
    let exit = within("wait", child.wait()).await.expect("exit");
    assert!(exit.killed, "{exit:?}");
}

/// Set in the environment of a copy of this test binary that plays a reconciler to be killed.
const DOOMED_RECONCILER: &str = "HAKIRI_TEST_DOOMED_RECONCILER";

/// When the reconciler itself is SIGKILLed (no `Drop`, no signal), a tap that goes on writing
/// dies at its next write: the read end of its stdout closed with the reconciler.
#[tokio::test]
async fn a_tap_dies_at_its_next_write_once_the_reconciler_is_killed() {
    if std::env::var_os(DOOMED_RECONCILER).is_some() {
        return doomed_reconciler().await;
    }
    let mut reconciler = tokio::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "a_tap_dies_at_its_next_write_once_the_reconciler_is_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DOOMED_RECONCILER, "1")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("a copy of this test");
    let stdout = reconciler.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let tap: u32 = within("the tap's pid", async {
        loop {
            let line = lines.next_line().await.expect("read").expect("a pid line");
            // libtest may print the test's name on the same line first.
            if let Some((_, pid)) = line.split_once("tap pid ") {
                return pid.parse().expect("a pid");
            }
        }
    })
    .await;
    assert!(alive(tap), "the tap runs under the doomed reconciler");
    reconciler.start_kill().expect("SIGKILL");
    within("the reconciler's end", reconciler.wait())
        .await
        .expect("reaped");
    assert!(gone(tap).await, "tap {tap} outlived its killed reconciler");
}

/// The doomed reconciler: starts a tap that writes a line every 100 ms for 40 s (longer than
/// [`LIVENESS`], so it cannot pass by ending on its own), reads one line, says the tap's pid,
/// then waits to be killed without reading more.
async fn doomed_reconciler() {
    let mut steps = Vec::new();
    for n in 0..400 {
        steps.push(json!({"json": state(n)}));
        steps.push(json!({"sleep_ms": 100}));
    }
    let mut child = spawn(tap(Value::Array(steps)));
    next_json(&mut child).await;
    println!("tap pid {}", child.id());
    tokio::time::sleep(LIVENESS * 2).await;
    // Never reached in the real test: the parent kills this process first.
    std::mem::forget(child);
}

/// A process that left the group (`setsid`) and holds stdout open cannot keep the reader from
/// seeing the end once the program itself has exited (it is given up on after an idle 5 s).
#[tokio::test]
async fn a_process_that_left_the_group_cannot_hang_the_reader() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The program waits until the other process has left the group: were it to exit first,
    // the group would be killed with the other process still in it.
    let mut child = spawn(
        ProcessSpec::new("sh", "run-0001")
            .current_dir(dir.path())
            .arg("-c")
            .arg(
                "setsid sh -c 'echo $$; touch left; exec sleep 60 2>/dev/null' & \
                 while [ ! -e left ]; do sleep 0.05; done",
            ),
    );
    let escaped = within("the escaped pid", child.next_line())
        .await
        .expect("a line")
        .expect("the escaped process's pid");
    let escaped = String::from_utf8(escaped).expect("utf-8");
    assert_eq!(
        within("the end of stdout", child.next_line())
            .await
            .expect("no error"),
        None
    );
    let exit = within("wait", child.wait()).await.expect("exit");
    assert!(exit.success(), "{exit:?}");
    // It escaped on purpose: ending it is the test's job.
    let pid: u32 = escaped.trim().parse().expect("a pid");
    assert!(
        alive(pid),
        "the escaped process outlives the group, as documented"
    );
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
}
