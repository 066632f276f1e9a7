//! The `airbyte` connector driving a real Airbyte source: `airbyte-source-faker` 7.2.1 from
//! PyPI (Airbyte's Python CDK 6.61.6), installed by `scripts/airbyte-sources` (which
//! `scripts/setup` runs) into a cached virtual environment, run through the `Reconciler` on the
//! memory backend with Hakiri as the loader.
//!
//! The program is found through `HAKIRI_SOURCE_FAKER` or
//! `scripts/airbyte-sources --where airbyte-source-faker`; when it is not installed every test
//! here fails, saying how to install it.
//!
//! What the faker really does, and these tests hold it to (ADR 0029): it offers `products`,
//! `users` and `purchases`, incremental on a source-defined `updated_at`, keyed by `id`; it
//! prints only STREAM states, each with `sourceStats.recordCount`; with `always_updated: false`
//! a stream that has a state gets no records, so a resumed run reads nothing, and a stream whose
//! cursor was reset is generated again from `id` 1.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use hakiri_core::{
    Actor, Catalog, CatalogExt, ChangeClass, ConnectorConfig, ConnectorRef, CursorKind,
    CursorReset, Decision, DecisionQuery, HolderId, PipelineId, PipelineSpec, Reason,
    ResetPermissions, ResetTarget, RunStatus, Schedule, SchemaPolicy, StreamName, StreamStatus,
};
use hakiri_reconciler::{builtin, AirbyteConnector, Reconciler, ReconcilerConfig, Venvs};
use serde_json::{json, Value};

const HOUR: Duration = Duration::from_secs(3600);

/// The installed `source-faker`, or a panic saying how to install it.
fn source_faker() -> PathBuf {
    installed(
        "airbyte-sources",
        "airbyte-source-faker",
        "HAKIRI_SOURCE_FAKER",
    )
}

/// A pipeline `faker` reading `products` and `users` (100 each) into `<dir>/out`.
struct Faker {
    dir: tempfile::TempDir,
}

impl Faker {
    async fn new(catalog: &dyn Catalog) -> Self {
        let faker = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let config = json!({
            "command": source_faker(),
            "output": faker.dir.path().join("out"),
            "config": {"count": 100, "seed": 42, "records_per_slice": 50,
                       "always_updated": false, "parallelism": 1},
            "streams": ["products", "users"],
        });
        pipeline(catalog, "faker", "airbyte", CursorKind::Opaque, config).await;
        faker
    }

    /// The ids each run wrote for `stream`, one list per run file.
    fn ids_by_run(&self, stream: &str) -> Vec<Vec<i64>> {
        output_files(&self.dir.path().join("out").join(stream))
            .iter()
            .map(|file| {
                std::fs::read_to_string(file)
                    .expect("read output")
                    .lines()
                    .map(|line| int(&serde_json::from_str::<Value>(line).expect("JSON"), "id"))
                    .collect()
            })
            .collect()
    }
}

/// Where the `pip_url` test keeps the venvs Hakiri installs: cached per user beside
/// `scripts/airbyte-sources`' own, so only a machine's first run pays for the install.
fn venvs_root() -> PathBuf {
    let tools = std::env::var_os("HAKIRI_TOOLS_DIR").map_or_else(
        || {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .expect("HOME or XDG_CACHE_HOME is set")
                .join("hakiri/tools")
        },
        PathBuf::from,
    );
    tools.join("airbyte/venvs")
}

fn one_to_a_hundred() -> Vec<i64> {
    (1..=100).collect()
}

/// A first run writes every record and makes each stream's last STATE its cursor; the next run
/// is given those states back and reads nothing again; after a reset of `users` alone, the next
/// run re-reads `users` only.
#[tokio::test]
async fn a_full_run_an_incremental_resume_that_reads_nothing_twice_and_a_per_stream_reset() {
    let (catalog, clock) = catalog();
    let faker = Faker::new(&*catalog).await;
    let reconciler = reconciler(catalog.clone());

    let first = only(reconcile(&reconciler).await);
    assert_eq!(first.status, Some(RunStatus::Succeeded), "{first:?}");
    assert_eq!(faker.ids_by_run("products"), [one_to_a_hundred()]);
    assert_eq!(faker.ids_by_run("users"), [one_to_a_hundred()]);
    assert!(
        faker.ids_by_run("purchases").is_empty(),
        "an unselected stream"
    );
    let users = cursor(&*catalog, "faker", "users").await.expect("a cursor");
    assert_eq!(users["type"], "STREAM", "{users}");
    assert_eq!(
        users["stream"]["stream_descriptor"],
        json!({"name": "users"})
    );
    assert_eq!(
        users["stream"]["stream_state"]["loop_offset"], 100,
        "{users}"
    );
    assert_eq!(users.get("sourceStats"), None, "statistics are not kept");
    let products = cursor(&*catalog, "faker", "products")
        .await
        .expect("a cursor");
    assert_eq!(products["stream"]["stream_state"]["seed"], 42, "{products}");
    let stats = run(&*catalog, &first).await.stats;
    let said = stats[&stream("users")];
    assert_eq!(
        (said.records, said.status, said.estimated_records),
        (100, Some(StreamStatus::Complete), Some(100)),
        "what Hakiri wrote, and what the source said it would send and where it got"
    );

    clock.advance(HOUR);
    let second = only(reconcile(&reconciler).await);
    assert_eq!(second.status, Some(RunStatus::Succeeded), "{second:?}");
    assert_eq!(faker.ids_by_run("products").len(), 1, "nothing read twice");
    assert_eq!(faker.ids_by_run("users").len(), 1, "nothing read twice");
    assert_eq!(cursor(&*catalog, "faker", "users").await, Some(users));
    assert_eq!(
        cursor(&*catalog, "faker", "products").await,
        Some(products.clone())
    );

    let pipeline = PipelineId::new("faker").unwrap();
    let lease = catalog
        .acquire(&pipeline, &HolderId::new("op").unwrap(), HOUR)
        .await
        .unwrap();
    let reset = CursorReset {
        target: ResetTarget::Initial,
        expected_version: None,
        by: Actor::System,
        reason: Reason::new("re-read users").unwrap(),
        allow: ResetPermissions::default(),
    };
    catalog
        .reset_cursor(&lease, &StreamName::new("users").unwrap(), reset)
        .await
        .unwrap();
    catalog.release(&lease).await.unwrap();
    clock.advance(HOUR);
    let third = only(reconcile(&reconciler).await);
    assert_eq!(third.status, Some(RunStatus::Succeeded), "{third:?}");
    assert_eq!(
        faker.ids_by_run("users"),
        [one_to_a_hundred(), one_to_a_hundred()],
        "users read again, from the start"
    );
    assert_eq!(
        faker.ids_by_run("products").len(),
        1,
        "products not read again"
    );
    assert_eq!(cursor(&*catalog, "faker", "products").await, Some(products));
    let users = cursor(&*catalog, "faker", "users").await.expect("a cursor");
    assert_eq!(
        users["stream"]["stream_state"]["loop_offset"], 100,
        "{users}"
    );
}

/// Runs the real source after noting each command in `<dir>/calls`; while `<dir>/old` exists,
/// its discovered catalog lacks the `age` column of `users`, as an older version of a source
/// would.
const OLDER: &str = r#"echo "$1" >> "$DIR/calls"
if [ "$1" = discover ] && [ -e "$DIR/old" ]; then
  "$0" "$@" | sed 's/"age": *{"type": *"integer"}, *//'
  exit $?
fi
exec "$0" "$@""#;

/// A column the source adds is held for review: the run ends cancelled before the source reads,
/// the pipeline pauses and nothing is written; once the change is accepted, the next run reads
/// with the new schema. The faker types its columns without `null` (`"age": {"type":
/// "integer"}`), so a new one is a required column: a breaking change, which the default policy
/// holds.
#[tokio::test]
async fn a_new_column_is_held_before_the_source_reads_and_read_once_accepted() {
    let (catalog, clock) = catalog();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("old"), "").expect("flag");
    let script = format!("DIR='{}'\n{OLDER}", dir.path().display());
    let config = json!({
        "command": ["/bin/sh", "-c", script, source_faker()],
        "output": dir.path().join("out"),
        "config": {"count": 10, "seed": 42, "always_updated": false, "parallelism": 1},
        "streams": ["users"],
    });
    let pipeline = PipelineId::new("faker").unwrap();
    let spec = PipelineSpec::new(
        pipeline.clone(),
        ConnectorRef::new("airbyte").unwrap(),
        CursorKind::Opaque,
    )
    .with_schedule(Schedule::Interval(HOUR))
    .with_config(ConnectorConfig::new(config).unwrap())
    .with_schema_policy(SchemaPolicy::default());
    catalog.create_pipeline(spec, &Actor::System).await.unwrap();
    let reconciler = reconciler(catalog.clone());
    let calls = || std::fs::read_to_string(dir.path().join("calls")).unwrap_or_default();
    let users = || output_files(&dir.path().join("out").join("users")).len();

    // Later than the pipeline's creation: a run begun in the same instant as a spec change does
    // not prove the new spec, and the next run would check again.
    clock.advance(HOUR);
    let first = only(reconcile(&reconciler).await);
    assert_eq!(first.status, Some(RunStatus::Succeeded), "{first:?}");
    assert_eq!(calls(), "check\ndiscover\nread\n");
    assert_eq!(users(), 1);
    let before = catalog
        .get_cursor(&pipeline, &StreamName::new("users").unwrap())
        .await
        .unwrap()
        .expect("a cursor");

    std::fs::remove_file(dir.path().join("old")).expect("the source is upgraded");
    clock.advance(HOUR);
    let held = only(reconcile(&reconciler).await);
    assert_eq!(held.status, Some(RunStatus::Cancelled), "{held:?}");
    let message = held.message.clone().unwrap_or_default();
    assert!(message.contains("held (decision"), "{message}");
    assert_eq!(
        calls(),
        "check\ndiscover\nread\ndiscover\n",
        "no read after the hold"
    );
    assert_eq!(users(), 1, "nothing written");
    let after = catalog
        .get_cursor(&pipeline, &StreamName::new("users").unwrap())
        .await
        .unwrap()
        .expect("a cursor");
    assert_eq!(after.version, before.version);
    assert!(catalog
        .get_pipeline(&pipeline)
        .await
        .unwrap()
        .paused
        .is_some());

    let pending: Vec<Decision> = catalog
        .list_decisions(&DecisionQuery::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(Decision::is_pending)
        .collect();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].class, ChangeClass::Breaking);
    catalog.decide(pending[0].id, accept()).await.unwrap();
    let resumed = only(reconcile(&reconciler).await);
    assert_eq!(resumed.status, Some(RunStatus::Succeeded), "{resumed:?}");
    assert!(calls().ends_with("discover\nread\n"), "{}", calls());
    let current = catalog
        .get_schema(&pipeline, &StreamName::new("users").unwrap(), None)
        .await
        .unwrap();
    assert!(
        current.schema.column("age").is_some(),
        "{:?}",
        current.schema
    );
}

/// A source named by `pip_url` is installed by Hakiri into a venv of its own (the faker, its
/// dependencies pinned by the same constraints as `scripts/airbyte-sources`), found there by
/// its default program name (`source-faker` for `airbyte-source-faker`), and run.
#[tokio::test]
async fn a_source_named_by_pip_url_is_installed_into_its_own_venv_and_runs() {
    let (catalog, _clock) = catalog();
    let dir = tempfile::tempdir().expect("tempdir");
    let constraints = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/airbyte-constraints/airbyte-source-faker-7.2.1.txt");
    let pip_url = format!(
        "airbyte-source-faker==7.2.1 -c {}",
        constraints.canonicalize().expect("constraints").display()
    );
    let config = json!({
        "pip_url": pip_url,
        "output": dir.path().join("out"),
        "config": {"count": 10, "seed": 7, "parallelism": 1},
        "streams": ["users"],
    });
    pipeline(&*catalog, "faker", "airbyte", CursorKind::Opaque, config).await;
    let venvs = Venvs::new(venvs_root());
    let reconciler = Reconciler::new(
        catalog.clone(),
        builtin().with("airbyte", AirbyteConnector::with_venvs(venvs.clone())),
        ReconcilerConfig::new(HolderId::new("test-reconciler").unwrap()),
    );
    let end = only(reconcile(&reconciler).await);
    assert_eq!(
        end.status,
        Some(RunStatus::Succeeded),
        "{end:?}\nthis test needs python3 (3.10 to 3.12) with venv and PyPI, or PIP_INDEX_URL / \
         PIP_FIND_LINKS offering airbyte-source-faker 7.2.1 and its dependencies"
    );
    let ids: Vec<i64> = output_records(&dir.path().join("out/users"))
        .iter()
        .map(|r| int(r, "id"))
        .collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    let installed = venvs.list().expect("list venvs");
    let faker = installed
        .iter()
        .find(|venv| venv.pip_url == pip_url)
        .unwrap_or_else(|| panic!("{pip_url} is not among {installed:?}"));
    assert!(
        faker.executables.iter().any(|e| e == "source-faker"),
        "{faker:?}"
    );
}
