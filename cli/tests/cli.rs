//! End-to-end tests of the `hakiri` binary on the embedded SQLite catalog: each test runs the
//! built binary in a temporary directory of its own (catalog `sqlite://<dir>/.hakiri/`).
//!
//! `--output json` is parsed and asserted on; a refusal is checked for its exit code, its
//! message and for having changed nothing.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hakiri_catalog_do::store::Exec;
use hakiri_catalog_do::{SqliteCatalog, SqliteConfig, SqliteConnection};
use hakiri_core::{
    BeginRun, Catalog, CursorAdvance, CursorValue, Error, HolderId, PipelineId, ProjectId,
    StreamName, Trigger,
};
use hakiri_test_kit::postgres;
use serde_json::{json, Value};

const PROJECT: &str = "e2e";

/// A temporary working directory with its own catalog.
struct Env {
    work: common::Workdir,
}

impl std::ops::Deref for Env {
    type Target = common::Workdir;

    fn deref(&self) -> &common::Workdir {
        &self.work
    }
}

impl Env {
    fn new() -> Self {
        Self {
            work: common::Workdir::new(PROJECT),
        }
    }

    /// A directory holding a copy of `examples/quickstart`.
    fn quickstart() -> Self {
        let env = Self::new();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
        copy_dir(&source, env.path());
        env
    }

    fn catalog_file(&self) -> PathBuf {
        self.path().join(".hakiri").join(format!("{PROJECT}.db"))
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path().join(name), text).expect("write a test file");
    }

    /// Runs a command that must fail with `code`; returns its stderr.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "hakiri {args:?} should exit {code}:\nstdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    /// The pipelines as `pipelines list --output json` prints them.
    fn pipelines(&self) -> Vec<Value> {
        self.json(&["pipelines", "list"])
            .as_array()
            .expect("a JSON array")
            .clone()
    }

    /// Opens the catalog file in this process (to hold leases the way a run does).
    fn open_catalog(&self) -> SqliteCatalog {
        SqliteCatalog::open(
            self.catalog_file(),
            ProjectId::new(PROJECT).unwrap(),
            SqliteConfig::default(),
        )
        .expect("open the catalog file")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn ids(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .map(|p| p[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

const TWO_PIPELINES: &str = r#"
[[pipeline]]
id = "orders"
connector = "jsonl"
cursor_kind = "monotonic"
schedule = { every = "1h" }
config = { input = "in", output = "out", cursor_field = "updated_at" }

[[pipeline]]
id = "logs"
connector = "tail"
cursor_kind = "opaque"
config = { input = "app.log", output = "out", stream = "app" }
"#;

// ---------------------------------------------------------------------------------------------
// apply

#[test]
fn apply_creates_then_reports_field_diffs_and_unchanged_pipelines() {
    let env = Env::new();
    env.write("hakiri.toml", TWO_PIPELINES);

    let first = env.json(&["apply", "-f", "hakiri.toml"]);
    assert_eq!(
        first["summary"],
        json!({"created": 2, "updated": 0, "unchanged": 0, "deleted": 0})
    );
    assert_eq!(first["changes"][0]["pipeline"], "orders");
    assert_eq!(first["changes"][0]["change"], "created");
    assert_eq!(first["changes"][0]["generation"], 1);

    env.write("hakiri.toml", &TWO_PIPELINES.replace("\"1h\"", "\"5m\""));
    let second = env.json(&["apply", "-f", "hakiri.toml"]);
    assert_eq!(second["summary"]["updated"], 1);
    assert_eq!(second["summary"]["unchanged"], 1);
    let update = &second["changes"][0];
    assert_eq!(update["change"], "updated");
    assert_eq!(update["from_generation"], 1);
    assert_eq!(update["generation"], 2);
    assert_eq!(
        update["diff"],
        json!([{"field": "schedule.every", "from": "1h", "to": "5m"}])
    );
    assert_eq!(second["changes"][1]["change"], "unchanged");

    let text = env.ok(&["apply", "-f", "hakiri.toml"]);
    assert!(
        text.contains("unchanged") && text.contains("0 created, 0 updated, 2 unchanged"),
        "{text}"
    );
    let orders = env.json(&["pipelines", "show", "orders"]);
    assert_eq!(orders["pipeline"]["generation"], 2);
    assert_eq!(
        orders["pipeline"]["spec"]["schedule"],
        json!({"every": "5m"})
    );
}

#[test]
fn apply_dry_run_writes_nothing_and_prune_needs_confirmation() {
    let env = Env::new();
    env.write("hakiri.toml", TWO_PIPELINES);

    let dry = env.json(&["apply", "-f", "hakiri.toml", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["summary"]["created"], 2);
    assert!(
        !env.catalog_file().exists(),
        "a dry run must not create the catalog"
    );

    env.ok(&["apply", "-f", "hakiri.toml"]);
    let only_orders = TWO_PIPELINES
        .split("[[pipeline]]\nid = \"logs\"")
        .next()
        .unwrap();
    env.write("orders-only.toml", only_orders);

    let refused = env.fails(2, &["apply", "-f", "orders-only.toml", "--prune"]);
    assert!(
        refused.contains("--prune would delete 1 pipeline(s)") && refused.contains("logs"),
        "{refused}"
    );
    assert!(refused.contains("--yes"), "{refused}");
    assert_eq!(env.pipelines().len(), 2, "nothing was pruned");

    let pruned = env.json(&["apply", "-f", "orders-only.toml", "--prune", "--yes"]);
    assert_eq!(pruned["summary"]["deleted"], 1);
    assert_eq!(
        pruned["changes"][1],
        json!({
            "pipeline": "logs", "change": "deleted", "from_generation": 1, "generation": null
        })
    );
    let left: Vec<Value> = env.pipelines();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["spec"]["id"], "orders");
}

/// Each bad file: exit 2, the error names file:line, and nothing at all is applied (the good
/// pipelines of the same file included).
#[test]
fn a_bad_hakiri_toml_names_the_line_and_applies_nothing() {
    let env = Env::new();
    env.write("hakiri.toml", TWO_PIPELINES);
    env.ok(&["apply", "-f", "hakiri.toml"]);
    let before = env.pipelines();

    // Every bad file also edits `orders` and adds `extra`, which must not be applied either.
    let edited = TWO_PIPELINES.replace("\"1h\"", "\"2h\"")
        + "\n[[pipeline]]\nid = \"extra\"\nconnector = \"jsonl\"\ncursor_kind = \"monotonic\"\n\
           config = { input = \"in\", output = \"out\", cursor_field = \"id\" }\n";
    let cases: [(&str, String, &str, &str); 5] = [
        (
            "unknown field",
            edited.replace(
                "cursor_kind = \"opaque\"",
                "cursor_kind = \"opaque\"\nshedule = \"manual\"",
            ),
            "hakiri.toml:13:1:",
            "unknown field `shedule`",
        ),
        (
            "bad cron",
            edited.replace(
                "config = { input = \"app.log\"",
                "schedule = { cron = \"61 * * * *\" }\nconfig = { input = \"app.log\"",
            ),
            "hakiri.toml:13:",
            "cron expression",
        ),
        (
            "duplicate id",
            edited.replace("id = \"extra\"", "id = \"orders\""),
            "hakiri.toml:16:6:",
            "duplicate pipeline id \"orders\": it is already declared on line 3",
        ),
        (
            "bad duration",
            edited.replace("\"2h\"", "\"two hours\""),
            "hakiri.toml:6:",
            "two hours",
        ),
        (
            "interval too short",
            edited.replace("\"2h\"", "\"20ms\""),
            "hakiri.toml:6:12:",
            "shorter than the minimum of 1s",
        ),
    ];
    for (case, text, location, problem) in cases {
        env.write("hakiri.toml", &text);
        let stderr = env.fails(2, &["apply", "-f", "hakiri.toml"]);
        assert!(
            stderr.contains(&format!("error: {location}")),
            "{case}: {stderr}"
        );
        assert!(stderr.contains(problem), "{case}: {stderr}");
        assert!(stderr.contains("nothing was applied"), "{case}: {stderr}");
        assert_eq!(env.pipelines(), before, "{case}: something was applied");

        let json_error = env.run(&["--output", "json", "apply", "-f", "hakiri.toml"]);
        let error: Value = serde_json::from_slice(&json_error.stderr).expect("a JSON error");
        assert_eq!(error["error"]["code"], "manifest", "{case}");
        assert_eq!(error["error"]["location"]["file"], "hakiri.toml", "{case}");
        assert!(
            error["error"]["location"]["line"].as_u64().unwrap() > 0,
            "{case}"
        );
    }

    // On a fresh project too: the catalog stays empty.
    let fresh = Env::new();
    fresh.write("hakiri.toml", &edited.replace("\"2h\"", "\"two hours\""));
    fresh.fails(2, &["apply", "-f", "hakiri.toml"]);
    let stderr = fresh.fails(2, &["pipelines", "list"]);
    assert!(stderr.contains("has no catalog"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// plan, pipelines, migrate, errors

#[test]
fn plan_is_a_dry_run_in_json_and_as_a_table() {
    let env = Env::new();
    env.write("hakiri.toml", TWO_PIPELINES);
    env.ok(&["apply", "-f", "hakiri.toml"]);

    let plan = env.json(&["plan"]);
    let items = plan["items"].as_array().unwrap();
    assert_eq!(ids(items, "pipeline"), ["logs", "orders"]);
    assert_eq!(
        items[0]["action"],
        json!({"action": "skip", "reason": {"kind": "manual"}})
    );
    assert_eq!(
        items[1]["action"],
        json!({"action": "dispatch", "trigger": "schedule", "attempt": 1})
    );
    let table = env.ok(&["plan"]);
    assert!(
        table.contains("dispatch (scheduled)") && table.contains("1 to dispatch"),
        "{table}"
    );
    // A dry run: the same plan again, and no run was begun.
    assert_eq!(env.json(&["plan"])["items"], plan["items"]);
    assert_eq!(env.json(&["runs", "list"])["items"], json!([]));
}

#[test]
fn pipelines_pause_resume_show_and_guarded_delete() {
    let env = Env::new();
    env.write("hakiri.toml", TWO_PIPELINES);
    env.ok(&["apply", "-f", "hakiri.toml"]);

    let paused = env.json(&[
        "pipelines",
        "pause",
        "orders",
        "--reason",
        "upstream maintenance",
    ]);
    assert_eq!(paused["paused"]["reason"], "upstream maintenance");
    assert_eq!(
        paused["paused"]["by"],
        json!({"kind": "operator", "name": "tester"})
    );
    let plan = env.json(&["plan"]);
    assert_eq!(
        plan["items"][1]["action"],
        json!({"action": "skip", "reason": {"kind": "paused"}})
    );

    let show = env.json(&["pipelines", "show", "orders"]);
    assert_eq!(show["pipeline"]["spec"]["connector"], "jsonl");
    assert!(show["pipeline"]["paused"].is_object());
    assert_eq!(show["cursors"], json!([]));
    assert_eq!(show["held"], json!([]));

    let resumed = env.json(&["--as", "oncall", "pipelines", "resume", "orders"]);
    assert!(resumed["paused"].is_null());
    let events = env.json(&["events", "--pipeline", "orders"]);
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["pipeline_created", "pipeline_paused", "pipeline_resumed"]
    );
    assert_eq!(
        events[2]["actor"],
        json!({"kind": "operator", "name": "oncall"})
    );

    let refused = env.fails(2, &["pipelines", "delete", "logs"]);
    assert!(
        refused.contains("--yes") && refused.contains("nothing was deleted"),
        "{refused}"
    );
    assert_eq!(env.pipelines().len(), 2);
    let deleted = env.json(&["pipelines", "delete", "logs", "--yes"]);
    assert_eq!(deleted, json!({"deleted": "logs", "generation": 1}));
    assert_eq!(env.pipelines().len(), 1);

    let missing = env.fails(2, &["pipelines", "show", "logs"]);
    assert!(
        missing.contains("error: pipeline logs not found"),
        "{missing}"
    );
    assert!(
        missing.contains("hint: list the project's pipelines with `hakiri pipelines list`"),
        "{missing}"
    );
}

#[test]
fn migrate_creates_the_sqlite_catalog_and_a_wrong_project_names_the_existing_ones() {
    let env = Env::new();
    let migrated = env.json(&["migrate"]);
    assert_eq!(migrated["migrated"], true);
    assert_eq!(migrated["project"], PROJECT);
    assert!(env.catalog_file().exists());

    let stderr = env.fails(2, &["--project", "e2f", "runs", "list"]);
    assert!(stderr.contains("project e2f has no catalog"), "{stderr}");
    assert!(
        stderr.contains(&format!("projects in this catalog: {PROJECT}")),
        "{stderr}"
    );
    assert!(
        !env.path().join(".hakiri/e2f.db").exists(),
        "a read must not create a catalog"
    );

    let bad_url = env.fails(2, &["--catalog", "mysql://db", "plan"]);
    assert!(bad_url.contains("use sqlite://DIR/"), "{bad_url}");
    let no_token = env.fails(2, &["--catalog", "https://hakiri.example.com", "plan"]);
    assert!(
        no_token.contains("--token") && no_token.contains("HAKIRI_TOKEN"),
        "{no_token}"
    );
}

// ---------------------------------------------------------------------------------------------
// the quickstart flow: reconcile, runs, cursors, schemas, decisions, events

/// The quickstart's story: apply → reconcile --once → a held breaking change pauses `shop` →
/// accept → reconcile → `shop` resumes and reads the rest.
#[test]
fn quickstart_flow_holds_a_breaking_change_until_accepted_then_resumes() {
    let env = Env::quickstart();
    env.ok(&["apply", "-f", "hakiri.toml"]);

    let first = env.json(&["reconcile", "--once"]);
    assert_eq!(first["interrupted"], false);
    let runs = first["runs"].as_array().unwrap();
    let status_of = |runs: &[Value], pipeline: &str| {
        runs.iter()
            .find(|r| r["pipeline"] == pipeline)
            .map(|r| r["status"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(status_of(runs, "app-log"), "succeeded");
    assert_eq!(status_of(runs, "shop"), "cancelled");
    let shop_run = runs.iter().find(|r| r["pipeline"] == "shop").unwrap();
    assert!(
        shop_run["message"].as_str().unwrap().contains("held"),
        "{shop_run}"
    );
    assert_eq!(shop_run["records"], 10);
    assert_eq!(
        first["plan"]["items"][1]["action"]["reason"]["kind"],
        "held_decision"
    );

    // The additive change was accepted by policy; the breaking one is held.
    let decisions = env.json(&["decisions", "list", "--pipeline", "shop"]);
    let items = decisions["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (items[0]["class"].as_str(), items[0]["verdict"].as_str()),
        (Some("additive"), Some("accepted"))
    );
    assert_eq!(items[0]["diff"]["added"][0]["name"], "coupon");
    assert_eq!(
        (items[1]["class"].as_str(), items[1]["verdict"].as_str()),
        (Some("breaking"), Some("held"))
    );
    assert_eq!(
        items[1]["diff"]["retyped"],
        json!([{"column": "amount", "from": "string", "to": "number"}])
    );
    let held = env.json(&["decisions", "list", "--held"]);
    assert_eq!(held["items"].as_array().unwrap().len(), 1);
    let decision = held["items"][0]["id"].as_u64().unwrap().to_string();

    let shop = env.json(&["pipelines", "show", "shop"]);
    assert_eq!(shop["pipeline"]["paused"]["by"], json!({"kind": "policy"}));
    assert_eq!(
        shop["held_decisions"],
        json!([decision.parse::<u64>().unwrap()])
    );
    // Resuming by hand is refused while the decision is held, and says what to do.
    let refused = env.fails(1, &["pipelines", "resume", "shop"]);
    assert!(
        refused.contains("hakiri decisions list --pipeline shop --held"),
        "{refused}"
    );

    let orders = env.json(&["cursors", "show", "shop", "orders"]);
    assert_eq!(orders["value"], "2026-01-02T10:00:00.000Z");

    let versions = env.json(&["schemas", "versions", "shop", "orders"]);
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let diff = env.json(&["schemas", "diff", "shop", "orders"]);
    assert_eq!(
        (diff["from"].as_u64(), diff["to"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(diff["class"], "additive");
    assert_eq!(
        diff["diff"]["added"][0],
        json!({"name": "coupon", "type": "string", "nullable": true})
    );
    let v1 = env.json(&["schemas", "show", "shop", "orders", "--version", "1"]);
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["schema"]["key"], json!(["id"]));
    let columns = ids(v1["schema"]["columns"].as_array().unwrap(), "name");
    assert_eq!(
        columns,
        ["amount", "customer_id", "id", "status", "updated_at"]
    );

    let accepted = env.json(&[
        "decisions",
        "accept",
        &decision,
        "--reason",
        "amounts are numbers now",
    ]);
    assert_eq!(accepted["decision"]["verdict"], "accepted");
    assert_eq!(accepted["decision"]["to_version"], 3);
    assert_eq!(
        accepted["decision"]["decided_by"],
        json!({"kind": "operator", "name": "tester"})
    );
    assert_eq!(accepted["pipeline_paused"], false);

    let second = env.json(&["reconcile", "--once"]);
    let runs = second["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{second}");
    assert_eq!(status_of(runs, "shop"), "succeeded");
    assert_eq!(runs[0]["records"], 3);
    assert!(second["plan"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["action"]["action"] == "wait"));

    let orders = env.json(&["cursors", "show", "shop", "orders"]);
    assert_eq!(orders["value"], "2026-01-03T10:05:00.000Z");
    let diff = env.json(&["schemas", "diff", "shop", "orders"]);
    assert_eq!(
        (
            diff["from"].as_u64(),
            diff["to"].as_u64(),
            diff["class"].as_str()
        ),
        (Some(2), Some(3), Some("breaking"))
    );
    let copied = std::fs::read_dir(env.path().join("out/shop/orders"))
        .unwrap()
        .count();
    assert_eq!(copied, 2, "one output file per run of the orders stream");

    let events = env.json(&["events", "--limit", "1000"]);
    let resolved: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"]["type"] == "decision_resolved")
        .collect();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["kind"]["verdict"], "accepted");
}

#[test]
fn runs_list_filters_and_pages_and_runs_show_details() {
    let env = Env::quickstart();
    env.ok(&["apply", "-f", "hakiri.toml"]);
    env.ok(&["reconcile", "--once"]);
    let decision = env.json(&["decisions", "list", "--held"])["items"][0]["id"].to_string();
    env.ok(&["decisions", "accept", &decision, "--reason", "ok"]);
    env.ok(&["reconcile", "--once"]);

    let all = env.json(&["runs", "list"]);
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    assert!(all["next"].is_null());

    let first = env.json(&["runs", "list", "--limit", "2"]);
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let next = first["next"].as_str().expect("a next page").to_owned();
    let rest = env.json(&["runs", "list", "--limit", "2", "--before", &next]);
    let rest_items = rest["items"].as_array().unwrap();
    assert_eq!(rest_items.len(), 1);
    assert_eq!(
        rest_items[0]["id"], all["items"][2]["id"],
        "pages continue where they stopped"
    );

    let shop = env.json(&[
        "runs",
        "list",
        "--pipeline",
        "shop",
        "--status",
        "succeeded",
    ]);
    let shop_items = shop["items"].as_array().unwrap();
    assert_eq!(shop_items.len(), 1);
    let run_id = shop_items[0]["id"].as_str().unwrap().to_owned();

    let run = env.json(&["runs", "show", &run_id]);
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["stats"]["orders"]["records"], 3);
    assert_eq!(
        run["cursors_at_start"]["orders"],
        "2026-01-02T10:00:00.000Z"
    );
    assert_eq!(run["cursors_at_end"]["orders"], "2026-01-03T10:05:00.000Z");
    let table = env.ok(&["runs", "show", &run_id]);
    assert!(
        table.contains("CURSOR AT START") && table.contains("succeeded"),
        "{table}"
    );

    let bad = env.fails(2, &["runs", "show", "not-a-run"]);
    assert!(
        bad.contains("is not a UUID") && bad.contains("hakiri runs list"),
        "{bad}"
    );
    let gone = env.fails(2, &["runs", "list", "--pipeline", "nope"]);
    assert!(gone.contains("pipeline nope not found"), "{gone}");
}

#[test]
fn a_rejected_change_keeps_the_version_and_is_held_again_if_the_source_still_sends_it() {
    let env = Env::quickstart();
    env.ok(&["apply", "-f", "hakiri.toml"]);
    env.ok(&["reconcile", "--once"]);
    let decision = env.json(&["decisions", "list", "--held"])["items"][0]["id"].to_string();

    let rejected = env.json(&[
        "decisions",
        "reject",
        &decision,
        "--reason",
        "amounts must stay strings",
    ]);
    assert_eq!(rejected["decision"]["verdict"], "rejected");
    assert_eq!(rejected["decision"]["reason"], "amounts must stay strings");
    assert!(rejected["decision"]["to_version"].is_null());
    assert_eq!(rejected["pipeline_paused"], false);
    let again = env.fails(
        1,
        &[
            "decisions",
            "accept",
            &decision,
            "--reason",
            "changed my mind",
        ],
    );
    assert!(
        again.contains("conflict") && again.contains("decided already"),
        "{again}"
    );

    // The source still sends numbers: the next run meets the change again, and it is held again.
    let second = env.json(&["reconcile", "--once"]);
    assert_eq!(second["runs"][0]["status"], "cancelled");
    let held = env.json(&["decisions", "list", "--held"]);
    let items = held["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_ne!(items[0]["id"].to_string(), decision);
    assert_eq!(
        env.json(&["schemas", "versions", "shop", "orders"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The cursor did not move past the records of the refused schema.
    assert_eq!(
        env.json(&["cursors", "show", "shop", "orders"])["value"],
        "2026-01-02T10:00:00.000Z"
    );
}

#[test]
fn a_policy_rejection_fails_the_run_and_reconcile_once_exits_1() {
    let env = Env::quickstart();
    let toml = std::fs::read_to_string(env.path().join("hakiri.toml")).unwrap();
    env.write(
        "hakiri.toml",
        &toml.replace("breaking = \"hold\"", "breaking = \"reject\""),
    );
    env.ok(&["apply", "-f", "hakiri.toml"]);

    let out = env.run(&["--output", "json", "reconcile", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1 run(s) failed") && stderr.contains("runs list --status failed"),
        "{stderr}"
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let shop = summary["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pipeline"] == "shop")
        .unwrap()
        .clone();
    assert_eq!(shop["status"], "failed");
    assert!(
        shop["message"].as_str().unwrap().contains("rejected"),
        "{shop}"
    );
    let failed = env.json(&["runs", "list", "--status", "failed"]);
    assert_eq!(failed["items"][0]["error"]["retryable"], false);
    assert_eq!(
        env.json(&["decisions", "list", "--held"])["items"],
        json!([])
    );
}

// ---------------------------------------------------------------------------------------------
// guarded cursor reset and rollback

/// A pipeline with a live run holding its lease, written from this process the way a
/// reconciler elsewhere would.
async fn leased_pipeline(env: &Env) -> (SqliteCatalog, hakiri_core::Lease, hakiri_core::RunId) {
    env.write(
        "hakiri.toml",
        "[[pipeline]]\nid = \"orders\"\nconnector = \"jsonl\"\ncursor_kind = \"monotonic\"\n\
         config = { input = \"in\", output = \"out\", cursor_field = \"id\" }\n",
    );
    env.ok(&["apply", "-f", "hakiri.toml"]);
    let catalog = env.open_catalog();
    let pipeline = PipelineId::new("orders").unwrap();
    let lease = catalog
        .acquire(
            &pipeline,
            &HolderId::new("reconciler-7").unwrap(),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    let run = catalog
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    let stream = StreamName::new("orders").unwrap();
    for position in [10, 20] {
        let value = CursorValue::new(json!(position)).unwrap();
        catalog
            .advance(&lease, run.id, &stream, CursorAdvance::to(value))
            .await
            .unwrap();
    }
    (catalog, lease, run.id)
}

#[tokio::test(flavor = "multi_thread")]
async fn cursor_reset_refuses_while_a_run_holds_the_lease_and_force_fences_it() {
    let env = Env::new();
    let (catalog, zombie, run) = leased_pipeline(&env).await;

    let refused = env.fails(
        1,
        &[
            "cursors",
            "reset",
            "orders",
            "orders",
            "--initial",
            "--reason",
            "replay",
        ],
    );
    assert!(refused.contains("refusing to reset cursor orders/orders: reconciler-7 holds the pipeline's writer lease"), "{refused}");
    assert!(
        refused.contains("--force takes the lease anyway and fences reconciler-7"),
        "{refused}"
    );
    assert_eq!(
        env.json(&["cursors", "show", "orders", "orders"])["version"],
        2,
        "nothing changed"
    );

    let missing_reason = env.fails(
        2,
        &[
            "cursors",
            "reset",
            "orders",
            "orders",
            "--initial",
            "--reason",
            " ",
            "--force",
        ],
    );
    assert!(missing_reason.contains("reason"), "{missing_reason}");

    let forced = env.json(&[
        "cursors",
        "reset",
        "orders",
        "orders",
        "--value",
        "5",
        "--reason",
        "replay from 5",
        "--force",
    ]);
    assert_eq!(forced["forced"], true);
    assert_eq!(forced["before"]["value"], 20);
    assert_eq!(forced["after"]["value"], 5);
    assert_eq!(forced["after"]["version"], 3);

    // The run that held the lease is fenced: its next write fails and changes nothing.
    let stream = StreamName::new("orders").unwrap();
    let late = catalog
        .advance(
            &zombie,
            run,
            &stream,
            CursorAdvance::to(CursorValue::new(json!(30)).unwrap()),
        )
        .await;
    assert!(matches!(late, Err(Error::Fenced { .. })), "{late:?}");
    assert_eq!(
        env.json(&["runs", "show", &run.to_string()])["status"],
        "abandoned"
    );

    // Audited: a forced acquisition by the operator, then the reset with its reason.
    let events = env.json(&["events", "--pipeline", "orders", "--limit", "1000"]);
    let events = events.as_array().unwrap();
    let forced_lease = events
        .iter()
        .find(|e| e["kind"]["type"] == "lease_acquired" && e["kind"]["forced"] == true)
        .expect("a forced lease event");
    assert_eq!(
        forced_lease["actor"],
        json!({"kind": "operator", "name": "tester"})
    );
    let reset = events
        .iter()
        .find(|e| e["kind"]["type"] == "cursor_reset")
        .expect("a reset event");
    assert_eq!(reset["kind"]["reason"], "replay from 5");
    assert_eq!(reset["kind"]["version"], 3);
    // The operator's lease was released afterwards: the pipeline is free again.
    assert!(events.iter().any(|e| e["kind"]["type"] == "lease_released"));
    let show = env.json(&["pipelines", "show", "orders"]);
    assert!(show["lease"]["holder"].is_null(), "{}", show["lease"]);

    // Free now: a rollback needs no --force.
    let rolled = env.json(&[
        "cursors",
        "rollback",
        "orders",
        "orders",
        "--to-version",
        "2",
        "--reason",
        "undo",
    ]);
    assert_eq!(rolled["forced"], false);
    assert_eq!(rolled["after"]["value"], 20);
    assert_eq!(rolled["after"]["version"], 4);
    let history = env.json(&["cursors", "history", "orders", "orders"]);
    let changes: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["change"]["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["rollback", "reset", "checkpoint", "checkpoint"]);
    let page = env.json(&["cursors", "history", "orders", "orders", "--limit", "1"]);
    assert_eq!(page["next"], 4);
    let older = env.json(&[
        "cursors", "history", "orders", "orders", "--limit", "3", "--before", "4",
    ]);
    assert_eq!(older["items"][0]["version"], 3);
    let list = env.json(&["cursors", "list", "orders"]);
    assert_eq!(list[0]["stream"], "orders");

    let bad_value = env.fails(
        2,
        &[
            "cursors",
            "reset",
            "orders",
            "orders",
            "--value",
            "2026-01-01",
            "--reason",
            "x",
        ],
    );
    assert!(
        bad_value.contains("is not JSON") && bad_value.contains("quote strings"),
        "{bad_value}"
    );
    let no_version = env.fails(
        2,
        &[
            "cursors",
            "rollback",
            "orders",
            "orders",
            "--to-version",
            "99",
            "--reason",
            "x",
        ],
    );
    assert!(
        no_version.contains("version 99 of cursor orders/orders not found"),
        "{no_version}"
    );
}

/// What a refused reset must leave exactly as it was: the audit log, the lease (holder and
/// epoch), the run and the cursor.
fn guarded_state(env: &Env, run: hakiri_core::RunId) -> [Value; 4] {
    [
        env.json(&["events", "--limit", "1000"]),
        env.json(&["pipelines", "show", "orders"])["lease"].clone(),
        env.json(&["runs", "show", &run.to_string()])["status"].clone(),
        env.json(&["cursors", "history", "orders", "orders", "--limit", "1000"]),
    ]
}

/// `cursors reset orders EXTRA… --reason replay --force`.
fn forced_reset<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["cursors", "reset", "orders"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--reason", "replay", "--force"]);
    args
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_forced_reset_takes_no_lease_and_fences_no_run() {
    let env = Env::new();
    let (catalog, lease, run) = leased_pipeline(&env).await;
    let before = guarded_state(&env, run);
    assert_eq!(before[2], "running");

    // (exit code, arguments, what the error must say)
    let refusals: [(i32, Vec<&str>, &[&str]); 7] = [
        (
            2,
            forced_reset(&["orders", "--value", "\"20\""]),
            &[
                "holds a number (20)",
                "a string (\"20\")",
                "hint: nothing was changed",
                "--allow-type-change",
            ],
        ),
        (
            2,
            forced_reset(&["ordres", "--value", "5"]),
            &[
                "cursor orders/ordres not found",
                "hakiri cursors list orders",
                "add --create",
            ],
        ),
        (
            2,
            forced_reset(&["ordres", "--initial"]),
            &["cursor orders/ordres not found"],
        ),
        (
            2,
            forced_reset(&["orders", "--value", "{\"offset\": 5}"]),
            &["must be a JSON number or string"],
        ),
        (
            1,
            forced_reset(&["orders", "--value", "5", "--expect-version", "1"]),
            &[
                "expected version 1, found version 2",
                "nothing was changed: the cursor is not at --expect-version",
            ],
        ),
        (
            2,
            vec![
                "cursors",
                "rollback",
                "orders",
                "orders",
                "--to-version",
                "99",
                "--reason",
                "undo",
                "--force",
            ],
            &["version 99 of cursor orders/orders not found"],
        ),
        (
            2,
            vec![
                "cursors",
                "rollback",
                "orders",
                "orders",
                "--to-version",
                "0",
                "--reason",
                "undo",
                "--force",
            ],
            &["version 0 of cursor orders/orders not found"],
        ),
    ];
    for (code, args, says) in &refusals {
        let stderr = env.fails(*code, args);
        for text in *says {
            assert!(stderr.contains(text), "{args:?}: {text:?} in\n{stderr}");
        }
        assert_eq!(
            guarded_state(&env, run),
            before,
            "{args:?} changed something:\n{stderr}"
        );
    }

    // The run was never fenced: it goes on checkpointing under its lease.
    let stream = StreamName::new("orders").unwrap();
    let next = catalog
        .advance(
            &lease,
            run,
            &stream,
            CursorAdvance::to(CursorValue::new(json!(30)).unwrap()),
        )
        .await
        .expect("the run still holds its lease");
    assert_eq!(next.version, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn cursor_reset_changes_type_or_creates_a_cursor_only_when_told() {
    let env = Env::new();
    let (catalog, lease, run) = leased_pipeline(&env).await;
    catalog
        .finish_run(&lease, run, hakiri_core::FinishRun::succeeded())
        .await
        .unwrap();
    catalog.release(&lease).await.unwrap();

    let retyped = env.json(&[
        "cursors",
        "reset",
        "orders",
        "orders",
        "--value",
        "\"2026-01-01T00:00:00.000Z\"",
        "--allow-type-change",
        "--reason",
        "the source now pages by timestamp",
    ]);
    assert_eq!(retyped["after"]["value"], "2026-01-01T00:00:00.000Z");
    assert_eq!(retyped["after"]["version"], 3);
    // Back to a number by rollback is a type change too.
    let stderr = env.fails(
        2,
        &[
            "cursors",
            "rollback",
            "orders",
            "orders",
            "--to-version",
            "2",
            "--reason",
            "undo",
        ],
    );
    assert!(stderr.contains("--allow-type-change"), "{stderr}");
    let rolled = env.json(&[
        "cursors",
        "rollback",
        "orders",
        "orders",
        "--to-version",
        "2",
        "--allow-type-change",
        "--reason",
        "undo",
    ]);
    assert_eq!(rolled["after"]["value"], 20);

    let created = env.json(&[
        "cursors",
        "reset",
        "orders",
        "refunds",
        "--value",
        "7",
        "--create",
        "--reason",
        "a new stream starts at 7",
    ]);
    assert!(created["before"].is_null(), "{created}");
    assert_eq!(created["after"]["value"], 7);
    assert_eq!(created["after"]["version"], 1);
    let streams: Vec<Value> = env
        .json(&["cursors", "list", "orders"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["stream"].clone())
        .collect();
    assert_eq!(streams, [json!("orders"), json!("refunds")]);
    let stderr = env.fails(
        2,
        &[
            "cursors",
            "reset",
            "orders",
            "x",
            "--initial",
            "--create",
            "--reason",
            "x",
        ],
    );
    assert!(stderr.contains("--create"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// reconcile --once must not report success over a catalog failure

#[test]
fn reconcile_once_fails_naming_the_dispatch_the_catalog_failed() {
    let env = Env::quickstart();
    env.ok(&["apply", "-f", "hakiri.toml"]);
    // The catalog refuses to record any run: every dispatch fails at `begin_run`, after the
    // lease was taken, the way a full disk or a broken database would.
    let mut sqlite = SqliteConnection::open(&env.catalog_file(), &SqliteConfig::default())
        .expect("open the catalog file");
    sqlite
        .execute(
            "CREATE TRIGGER refuse_runs BEFORE INSERT ON runs \
             BEGIN SELECT RAISE(ABORT, 'injected: runs cannot be written'); END",
            &[],
        )
        .expect("create the trigger");
    drop(sqlite);

    let out = env.run(&["--output", "json", "reconcile", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for pipeline in ["shop", "app-log"] {
        assert!(
            stderr.contains(&format!("could not dispatch pipeline {pipeline}: "))
                && stderr.contains("injected: runs cannot be written"),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("--max-ticks"), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = summary["failures"].as_array().expect("a list of failures");
    assert_eq!(failed.len(), 2, "each pipeline once: {summary}");
    assert!(
        failed.iter().all(|f| f["operation"] == "dispatch"),
        "{summary}"
    );
    // The table form names the failure instead of blaming --max-ticks.
    let out = env.run(&["reconcile", "--once"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("stopped (the catalog failed a dispatch or reap)"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// the reconcile loop: metrics and graceful shutdown

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[test]
fn reconcile_loop_serves_metrics_and_stops_gracefully_on_sigterm() {
    let env = Env::quickstart();
    env.ok(&["apply", "-f", "hakiri.toml"]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = env
        .command(&[
            "--output",
            "json",
            "reconcile",
            "--interval",
            "1s",
            "--grace",
            "5s",
            "--metrics-addr",
            &addr,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the reconcile loop");

    // Wait until both pipelines' first runs are counted (the loop dispatches at once).
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        if let Some(body) = http_get(port, "/metrics") {
            if body.contains("hakiri_runs_dispatched_total 2")
                && body.contains("hakiri_runs_succeeded_total 1")
            {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the metrics never showed the first runs"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    assert!(metrics.contains("# TYPE hakiri_ticks counter"), "{metrics}");
    assert!(http_get(port, "/nope").unwrap().starts_with("HTTP/1.1 404"));

    terminate(&child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the loop did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status}\n{stderr}");
    assert!(
        stderr.contains("shutting down") && stderr.contains("stopped"),
        "{stderr}"
    );

    // Progress is one JSON object per line: the runs this process began and ended.
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let begun = lines
        .iter()
        .filter(|l| l["kind"]["type"] == "run_begun")
        .count();
    let finished: Vec<&Value> = lines
        .iter()
        .filter(|l| l["kind"]["type"] == "run_finished")
        .collect();
    assert_eq!(begun, 2, "{stdout}");
    assert_eq!(finished.len(), 2, "{stdout}");
    assert!(
        finished.iter().all(|l| l["run"]["status"].is_string()),
        "{stdout}"
    );
    assert!(lines
        .iter()
        .any(|l| l["kind"]["type"] == "decision_recorded" && l["decision"]["class"] == "breaking"));
    // Nothing is left running or leased.
    assert_eq!(
        env.json(&["runs", "list", "--status", "running"])["items"],
        json!([])
    );
}

#[test]
fn events_page_by_sequence_and_follow_streams_new_ones() {
    let env = Env::new();
    env.write("hakiri.toml", TWO_PIPELINES);
    env.ok(&["apply", "-f", "hakiri.toml"]);

    let page = env.json(&["events", "--after", "1", "--limit", "1"]);
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["seq"], 2);
    let table = env.ok(&["events"]);
    assert!(
        table.contains("SEQ") && table.contains("pipeline created (generation 1)"),
        "{table}"
    );

    let mut child = env
        .command(&[
            "--output",
            "json",
            "events",
            "--follow",
            "--poll",
            "100ms",
            "--pipeline",
            "orders",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start events --follow");
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let next = || {
        let line = received
            .recv_timeout(Duration::from_secs(20))
            .expect("a followed event");
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    // The existing event of `orders` first (only the pipeline asked for), then new ones as they land.
    assert_eq!(next()["kind"]["type"], "pipeline_created");
    env.ok(&["pipelines", "pause", "logs", "--reason", "not followed"]);
    env.ok(&["pipelines", "pause", "orders", "--reason", "followed"]);
    let paused = next();
    assert_eq!(paused["pipeline"], "orders");
    assert_eq!(
        paused["kind"],
        json!({"type": "pipeline_paused", "reason": "followed"})
    );

    child.kill().expect("stop events --follow");
    child.wait().unwrap();
    reader.join().unwrap();
    // Paging back: the page just before a number, oldest first, of the log or of a pipeline.
    let seqs = |page: Value| -> Vec<u64> {
        page.as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        seqs(env.json(&["events", "--before", "4", "--limit", "2"])),
        [2, 3]
    );
    assert_eq!(
        seqs(env.json(&["events", "--before", "2", "--limit", "5"])),
        [1]
    );
    // Past the log's end: its last events.
    let newest = seqs(env.json(&["events", "--limit", "2"]));
    assert_eq!(
        seqs(env.json(&["events", "--before", "1000", "--limit", "2"])),
        newest
    );
    let all = seqs(env.json(&["events", "--pipeline", "orders", "--limit", "1000"]));
    assert!(all.len() >= 2, "{all:?}");
    let last = *all.last().unwrap();
    assert_eq!(
        seqs(env.json(&[
            "events",
            "--pipeline",
            "orders",
            "--before",
            &last.to_string(),
            "--limit",
            "1"
        ])),
        [all[all.len() - 2]]
    );
    let refused = env
        .command(&["events", "--before", "3", "--after", "1"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
}

#[test]
fn pipelines_run_requests_a_backfill_that_the_next_reconcile_dispatches() {
    let env = Env::quickstart();
    env.ok(&["apply", "-f", "hakiri.toml"]);
    env.ok(&["reconcile", "--once"]);
    let decision = env.json(&["decisions", "list", "--held"])["items"][0]["id"].to_string();
    env.ok(&["decisions", "accept", &decision, "--reason", "ok"]);
    env.ok(&["reconcile", "--once"]);

    let requested = env.json(&["pipelines", "run", "shop", "--backfill"]);
    assert_eq!(requested["requested"]["trigger"], "backfill");
    let plan = env.json(&["plan"]);
    let shop = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["pipeline"] == "shop")
        .expect("shop is planned")
        .clone();
    assert_eq!(shop["action"]["action"], "dispatch", "{shop}");
    assert_eq!(shop["action"]["trigger"], "backfill", "{shop}");
    env.ok(&["reconcile", "--once"]);
    let runs = env.json(&["runs", "list", "--pipeline", "shop"]);
    assert_eq!(runs["items"][0]["trigger"], "backfill", "{runs}");
    let after = env.json(&["pipelines", "show", "shop"]);
    assert!(
        after.to_string().contains("\"requested\":null"),
        "the run consumed the request: {after}"
    );
    let bad = env.fails(2, &["pipelines", "run", "nope"]);
    assert!(bad.contains("pipeline nope not found"), "{bad}");
}

// ---------------------------------------------------------------------------------------------
// errors that say what to do

#[test]
fn a_hakiri_toml_that_is_not_utf8_names_the_line_and_column_of_the_first_bad_byte() {
    let env = Env::new();
    let mut bytes = b"[[pipeline]]\nid = \"orders\"\nconnector = \"caf".to_vec();
    bytes.push(0xe9); // Latin-1 é
    bytes.extend_from_slice(b"\"\ncursor_kind = \"monotonic\"\n");
    std::fs::write(env.path().join("hakiri.toml"), bytes).unwrap();
    let stderr = env.fails(2, &["apply", "-f", "hakiri.toml"]);
    assert!(
        stderr.contains("error: hakiri.toml:3:17: byte 0xe9 is not UTF-8"),
        "{stderr}"
    );
    assert!(stderr.contains("3 | connector = \"caf"), "{stderr}");
    assert!(
        stderr.contains("hint: save hakiri.toml as UTF-8"),
        "{stderr}"
    );
    let json = env.run(&["--output", "json", "apply", "-f", "hakiri.toml"]);
    let error: Value = serde_json::from_slice(&json.stderr).expect("a JSON error");
    assert_eq!(
        error["error"]["location"],
        json!({ "file": "hakiri.toml", "line": 3, "column": 17 })
    );
}

#[test]
fn a_too_deeply_dotted_key_in_hakiri_toml_names_its_line() {
    let env = Env::new();
    let key = vec!["a"; 100].join(".");
    env.write(
        "hakiri.toml",
        &format!("[[pipeline]]\nid = \"orders\"\n{key} = 1\n"),
    );
    let stderr = env.fails(2, &["apply", "-f", "hakiri.toml"]);
    assert!(
        stderr.contains("error: hakiri.toml:3:1: recursion limit"),
        "{stderr}"
    );
}

#[test]
fn apply_without_user_or_logname_records_the_os_account_as_the_operator() {
    let env = Env::new();
    env.write("hakiri.toml", TWO_PIPELINES);
    let out = env
        .command(&["apply", "-f", "hakiri.toml"])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .output()
        .expect("run hakiri");
    assert!(
        out.status.success(),
        "apply without $USER failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let account = Command::new("id").arg("-un").output().expect("run id -un");
    let account = String::from_utf8(account.stdout).unwrap().trim().to_owned();
    let events = env.json(&["events"]);
    let actors: Vec<&Value> = events
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|e| &e["actor"])
        .collect();
    assert!(
        !actors.is_empty()
            && actors
                .iter()
                .all(|a| a.to_string().contains(&format!("\"{account}\""))),
        "every change is by the OS account {account}: {actors:?}"
    );
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_escapes() {
    let env = Env::quickstart();
    env.ok(&["apply", "-f", "hakiri.toml"]);
    // -vv: the reconciler logs each run's end at INFO.
    let out = env
        .command(&["-vv", "reconcile", "--once"])
        .env_remove("NO_COLOR")
        .output()
        .expect("run hakiri");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run ended"), "no logs: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour escapes on a pipe: {stderr:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_run_shows_its_records_as_unknown_and_what_it_checkpointed() {
    let env = Env::new();
    let (catalog, lease, run) = leased_pipeline(&env).await;
    // The holder lets go while running: the run is abandoned, never finished.
    catalog.release(&lease).await.unwrap();
    let run = run.to_string();

    let list = env.ok(&["runs", "list"]);
    let row = list
        .lines()
        .find(|l| l.contains(&run))
        .unwrap_or_else(|| panic!("no row for {run}:\n{list}"));
    assert!(
        row.contains("abandoned") && row.contains("unknown"),
        "{list}"
    );
    assert!(!row.contains(" 0 "), "{list}");

    let show = env.ok(&["runs", "show", &run]);
    assert!(
        show.contains("records") && show.contains("unknown"),
        "{show}"
    );
    assert!(show.contains("orders (none) → 20"), "{show}");

    // JSON keeps the data as stored.
    let json = env.json(&["runs", "show", &run]);
    assert_eq!(json["status"], "abandoned");
    assert_eq!(json["cursors_at_end"]["orders"], 20);
}

// Postgres connection errors: the server named, the cause said, the documented exit code.

/// `url` (`postgres://user@host:port/db?…`) with another user and database.
fn postgres_url_with(url: &str, user: Option<&str>, database: Option<&str>) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, rest) = rest.split_once('@').unwrap();
    let (host, rest) = rest.split_once('/').unwrap();
    let (db, query) = rest.split_once('?').unwrap_or((rest, ""));
    let userinfo = user.unwrap_or(userinfo);
    let db = database.unwrap_or(db);
    format!("{scheme}://{userinfo}@{host}/{db}?{query}")
}

#[test]
fn postgres_refused_names_host_port_and_cause_and_exits_3() {
    let env = Env::new();
    let port = free_port();
    let url = format!("postgres://hakiri@127.0.0.1:{port}/hakiri?sslmode=disable");
    let started = Instant::now();
    let stderr = env.fails(3, &["--catalog", &url, "pipelines", "list"]);
    assert!(
        stderr.contains(&format!(
            "cannot connect to postgres at 127.0.0.1:{port}: connection refused"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("pool timed out"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "hint: check that a Postgres server runs at 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    // A refusal is known at once; it is not waited out.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn postgres_missing_database_and_unknown_role_name_the_server_and_exit_2() {
    let server = postgres::shared();
    let env = Env::new();
    // host:port of the server, as the messages name it.
    let address = server
        .url()
        .split_once('@')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap();
    let host = address.rsplit_once(':').unwrap().0;

    let no_db = postgres_url_with(server.url(), None, Some("hakiri_no_such_db"));
    let missing = env.fails(2, &["--catalog", &no_db, "pipelines", "list"]);
    assert!(
        missing.contains(&format!(
            "postgres at {address} has no such database (3D000): database \"hakiri_no_such_db\" does not exist"
        )),
        "{missing}"
    );
    assert!(
        missing.contains(&format!("hint: create it (`createdb -h {host} -p ")),
        "{missing}"
    );

    let no_role = postgres_url_with(server.url(), Some("no_such_role"), None);
    let refused = env.fails(2, &["--catalog", &no_role, "pipelines", "list"]);
    assert!(
        refused.contains(&format!("postgres at {address} refused the login (28"))
            && refused.contains("no_such_role"),
        "{refused}"
    );
    assert!(
        refused.contains("hint: check the user (no_such_role)"),
        "{refused}"
    );

    // Never the server's C source line (the driver's "… at line N").
    for stderr in [missing, refused] {
        assert!(!stderr.contains(" at line "), "{stderr}");
    }
}
