//! An operator can always look at a stuck embedded catalog: with another process stopped inside
//! a write transaction on the catalog file (here a Python `sqlite3` process, SIGSTOPped), `hakiri`
//! still lists pipelines, runs, cursors and events and prints the plan, while a write fails after
//! the busy timeout saying the database is locked (ADR 0015).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PROJECT: &str = "stall";

fn hakiri(dir: &Path, args: &[&str]) -> Output {
    common::hakiri(&common::sqlite_catalog(dir), PROJECT)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run hakiri")
}

/// A process holding SQLite's write lock on `db`, stopped; killed on drop.
struct Stopped(Child);

impl Stopped {
    fn hold_write_lock(db: &Path) -> Self {
        let script = "import sqlite3, sys, time\n\
                      c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                      c.execute('BEGIN IMMEDIATE')\n\
                      c.execute('UPDATE pipelines SET body = body')\n\
                      print('holding', flush=True)\n\
                      time.sleep(3600)\n";
        let mut child = Command::new("python3")
            .args(["-c", script, db.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .expect(
                "python3 is needed to hold the lock from another process (apt install python3)",
            );
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "holding",
            "python3 did not take the write lock"
        );
        let stopped = Command::new("kill")
            .args(["-STOP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
        Stopped(child)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn operator_reads_answer_while_another_process_is_stopped_mid_write() {
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        "[[pipeline]]\nid = \"orders\"\nconnector = \"jsonl\"\ncursor_kind = \"monotonic\"\n\
                    [pipeline.config]\ninput = \"in\"\noutput = \"out\"\ncursor_field = \"id\"\n";
    std::fs::write(dir.path().join("hakiri.toml"), manifest).unwrap();
    let applied = hakiri(dir.path(), &["apply", "-f", "hakiri.toml"]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let _stopped = Stopped::hold_write_lock(&dir.path().join(format!(".hakiri/{PROJECT}.db")));

    for args in [
        &["pipelines", "list"][..],
        &["pipelines", "show", "orders"],
        &["runs", "list"],
        &["cursors", "list", "orders"],
        &["events"],
        &["plan"],
    ] {
        let started = Instant::now();
        let out = hakiri(dir.path(), args);
        assert!(
            out.status.success(),
            "hakiri {args:?} beside a stopped writer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Far below the 10 s busy timeout a read would otherwise wait out.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "hakiri {args:?} took {:?}",
            started.elapsed()
        );
    }

    let paused = hakiri(
        dir.path(),
        &["pipelines", "pause", "orders", "--reason", "x"],
    );
    let stderr = String::from_utf8_lossy(&paused.stderr);
    assert!(!paused.status.success(), "a write went through a held lock");
    assert!(stderr.contains("lock"), "{stderr}");
}
