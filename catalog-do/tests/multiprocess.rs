//! Several OS processes on one catalog file (an operator CLI beside a running reconciler):
//! never two live holders, no lost update, exact totals.

use std::process::Command;

use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_core::{
    Catalog, CatalogExt, Limit, PipelineId, ProjectId, RunQuery, RunStatus, StreamName,
};

const PROCESSES: u64 = 3;
const ROUNDS: u64 = 60;
const PIPELINES: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_racing_on_one_file_never_share_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("race.db");
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_hakiri-sqlite-drill"))
                .args([
                    "race",
                    db.to_str().unwrap(),
                    "race",
                    &format!("process-{i}"),
                ])
                .args([ROUNDS.to_string(), PIPELINES.to_string()])
                .spawn()
                .expect("start a drill process")
        })
        .collect();
    for mut child in children {
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "a racing process failed: {status}");
    }

    let catalog = SqliteCatalog::open(
        &db,
        ProjectId::new("race").unwrap(),
        SqliteConfig::default(),
    )
    .unwrap();
    let stream = StreamName::new("count").unwrap();
    let mut total = 0;
    for i in 0..PIPELINES {
        let pipeline = PipelineId::new(format!("p{i}")).unwrap();
        let cursor = catalog
            .get_cursor(&pipeline, &stream)
            .await
            .unwrap()
            .expect("every pipeline ran");
        let count = cursor.value.as_json().as_u64().unwrap();
        assert_eq!(
            cursor.version, count,
            "every increment is its own version: no lost update"
        );
        total += count;

        let runs = catalog
            .all_runs(&RunQuery::all().pipeline(pipeline.clone()).limit(Limit::MAX))
            .await
            .unwrap();
        assert_eq!(runs.len() as u64, count, "one run per increment");
        assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
        // Runs of one pipeline never overlap, and each ran under its own, higher epoch.
        let holders = hakiri_contract::assert_serial_runs(&pipeline, &runs);
        assert_eq!(
            holders.len() as u64,
            PROCESSES,
            "every process took turns on {pipeline}: {holders:?}"
        );
    }
    assert_eq!(total, PROCESSES * ROUNDS, "exact total across processes");
    assert!(
        catalog
            .all_statuses()
            .await
            .unwrap()
            .items
            .iter()
            .all(|s| s.lease.as_ref().is_some_and(|l| l.holder.is_none())),
        "every lease was released"
    );
}
