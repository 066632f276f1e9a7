//! Several OS processes on one catalog file (an operator CLI beside a running reconciler):
//! never two live holders, no lost update, exact totals.

use std::collections::BTreeMap;
use std::process::Command;

use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_core::{
    Catalog, CatalogExt, Limit, PipelineId, ProjectId, Run, RunQuery, RunStatus, StreamName,
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

        let runs = all_runs(&catalog, &pipeline).await;
        assert_eq!(runs.len() as u64, count, "one run per increment");
        assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
        // Runs of one pipeline never overlap, and each ran under its own epoch.
        let mut by_start: Vec<&Run> = runs.iter().collect();
        by_start.sort_by_key(|r| (r.started_at, r.epoch));
        for pair in by_start.windows(2) {
            assert!(
                pair[0].epoch < pair[1].epoch,
                "epochs increase run after run"
            );
            assert!(
                pair[0].finished_at.unwrap() <= pair[1].started_at,
                "runs {} and {} of {pipeline} overlap",
                pair[0].id,
                pair[1].id
            );
        }
        let holders: BTreeMap<_, usize> = runs.iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.holder.to_string()).or_default() += 1;
            m
        });
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

async fn all_runs(catalog: &SqliteCatalog, pipeline: &PipelineId) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut query = RunQuery::all().pipeline(pipeline.clone()).limit(Limit::MAX);
    loop {
        let page = catalog.list_runs(&query).await.unwrap();
        runs.extend(page.items);
        match page.next {
            Some(next) => query = query.before(next),
            None => return runs,
        }
    }
}
