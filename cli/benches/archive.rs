//! `hakiri export` and `hakiri import` against a raw bulk copy of the same rows, measured in the
//! same run.
//!
//! `cargo bench -p hakiri-cli --bench archive` builds an archive of a project with 20,000 events
//! and as long a cursor history (about 40,000 records), then over interleaved rounds measures
//! records per second of
//! - import into a fresh SQLite file (`SqliteCatalog`, synchronous=FULL) — the archive read and
//!   checked whole, then applied in batches, as `hakiri import` does — against a raw bulk insert
//!   of the same lines, as text rows, into one table of a fresh file with the same pragmas, in
//!   transactions of 1,000 rows;
//! - import into a fresh Postgres project against `COPY … FROM STDIN` of the same lines into a
//!   fresh table on the same server;
//! - export from each (`archive::export` to a sink, reading through the port) against reading
//!   the raw rows back in order (`SELECT` on SQLite, `COPY … TO STDOUT` on Postgres);
//!
//! and prints the median rates and the median of per-round ratios hakiri/raw. The raw side checks
//! nothing, derives nothing and keeps one index; the ratio is what the checks, the derived
//! columns and the format cost. The disk's fast or slow mode is printed before and after.

// A benchmark binary, not an API.
#![allow(missing_docs)]

use std::io::{self, BufReader};
use std::time::Instant;

use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_catalog_memory::MemoryCatalog;
use hakiri_catalog_postgres::{PgPool, PostgresCatalog};
use hakiri_contract::archive::long_history;
use hakiri_contract::unique_project;
use hakiri_core::archive::{self, ArchiveReader};
use hakiri_core::{Catalog, Timestamp};
use hakiri_test_kit::bench::median;
use hakiri_test_kit::{disk, postgres};

fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// An archive of a project whose log holds `events` events, nearly all advances of one cursor.
async fn sample(events: u64) -> Vec<u8> {
    let catalog = MemoryCatalog::new(unique_project());
    long_history(&catalog, events).await;
    let mut bytes = Vec::new();
    archive::export(&catalog, &mut bytes, Timestamp::from_millis(0), |_| {})
        .await
        .expect("export");
    bytes
}

/// The archive's record lines (neither header nor end): the raw side's rows.
fn record_lines(archive: &[u8]) -> Vec<&str> {
    let text = std::str::from_utf8(archive).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    lines[1..lines.len() - 1].to_vec()
}

/// Seconds `hakiri import` of `archive` into `catalog` takes: the checking read, then the import.
async fn import(catalog: &dyn Catalog, archive: &[u8]) -> f64 {
    let started = Instant::now();
    let summary = ArchiveReader::new(BufReader::new(archive))
        .expect("header")
        .summarize()
        .expect("a sound archive");
    let reader = ArchiveReader::new(BufReader::new(archive)).expect("header");
    archive::import(catalog, reader, &summary, |_| {})
        .await
        .expect("import");
    started.elapsed().as_secs_f64()
}

/// Seconds an export of `catalog` to a sink takes.
async fn export(catalog: &dyn Catalog) -> f64 {
    let started = Instant::now();
    archive::export(catalog, io::sink(), Timestamp::from_millis(0), |_| {})
        .await
        .expect("export");
    started.elapsed().as_secs_f64()
}

/// Seconds a raw bulk insert of `lines` into a fresh file takes, then seconds reading them back.
fn raw_sqlite(dir: &std::path::Path, lines: &[&str]) -> (f64, f64) {
    let file = dir.join("raw.db");
    let mut db = rusqlite::Connection::open(&file).expect("open");
    db.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
         CREATE TABLE raw (k INTEGER PRIMARY KEY, body TEXT NOT NULL);",
    )
    .expect("schema");
    let started = Instant::now();
    for chunk in lines.chunks(1000) {
        let tx = db.transaction().expect("begin");
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO raw (body) VALUES (?)")
                .expect("prepare");
            for line in chunk {
                insert.execute([line]).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    let written = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut select = db
        .prepare("SELECT body FROM raw ORDER BY k")
        .expect("prepare");
    let mut rows = select.query([]).expect("select");
    let mut bytes = 0;
    while let Some(row) = rows.next().expect("row") {
        bytes += row.get_ref(0).expect("body").as_str().expect("text").len();
    }
    assert!(bytes > 0);
    (written, started.elapsed().as_secs_f64())
}

/// Seconds `COPY … FROM STDIN` of `lines` into a fresh table takes, then `COPY … TO STDOUT`.
async fn raw_postgres(pool: &PgPool, table: &str, lines: &[&str]) -> (f64, f64) {
    let mut conn = pool.acquire().await.expect("a connection");
    sqlx_exec(
        &mut conn,
        &format!("CREATE TABLE {table} (k bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL)"),
    )
    .await;
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        // COPY's text format escapes backslashes.
        text.push_str(&line.replace('\\', "\\\\"));
        text.push('\n');
    }
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!("COPY {table} (body) FROM STDIN"))
        .await
        .expect("copy in");
    copy.send(text.as_bytes()).await.expect("send");
    copy.finish().await.expect("finish");
    let written = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut out = conn
        .copy_out_raw(&format!(
            "COPY (SELECT body FROM {table} ORDER BY k) TO STDOUT"
        ))
        .await
        .expect("copy out");
    let mut bytes = 0;
    while let Some(chunk) = futures_util::StreamExt::next(&mut out).await {
        bytes += chunk.expect("a chunk").len();
    }
    assert!(bytes > 0);
    let read = started.elapsed().as_secs_f64();
    drop(out);
    sqlx_exec(&mut conn, &format!("DROP TABLE {table}")).await;
    (written, read)
}

async fn sqlx_exec(conn: &mut sqlx::PgConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .expect(sql);
}

/// One backend's rates: hakiri and raw import and export, records per second.
#[derive(Default)]
struct Rates {
    import: Vec<f64>,
    raw_import: Vec<f64>,
    export: Vec<f64>,
    raw_export: Vec<f64>,
}

impl Rates {
    fn print(&self, label: &str) {
        let ratio = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(a, b)| a / b).collect());
        println!(
            "{label:<9} import {:>9.0} /s  raw {:>9.0} /s  hakiri/raw {:.2}   export {:>9.0} /s  raw {:>9.0} /s  hakiri/raw {:.2}",
            median(self.import.clone()),
            median(self.raw_import.clone()),
            ratio(&self.import, &self.raw_import),
            median(self.export.clone()),
            median(self.raw_export.clone()),
            ratio(&self.export, &self.raw_export),
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (events, rounds) = if full() { (20_000, 5) } else { (500, 1) };
    let archive = sample(events).await;
    let lines = record_lines(&archive);
    let records = lines.len() as f64;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let before = disk::fdatasync_time(dir.path());
    let pool = postgres::shared_pool().await;
    let (mut sqlite, mut pg) = (Rates::default(), Rates::default());
    for round in 0..rounds {
        let round_dir = tempfile::tempdir_in(dir.path()).expect("a round directory");
        let catalog = SqliteCatalog::open(
            round_dir.path().join("hakiri.db"),
            unique_project(),
            SqliteConfig::default(),
        )
        .expect("open");
        sqlite
            .import
            .push(records / import(&catalog, &archive).await);
        sqlite.export.push(records / export(&catalog).await);
        let (write, read) = raw_sqlite(round_dir.path(), &lines);
        sqlite.raw_import.push(records / write);
        sqlite.raw_export.push(records / read);

        let catalog = PostgresCatalog::new(pool.clone(), unique_project());
        pg.import.push(records / import(&catalog, &archive).await);
        pg.export.push(records / export(&catalog).await);
        let (write, read) = raw_postgres(
            &pool,
            &format!("raw_archive_{round}_{}", std::process::id()),
            &lines,
        )
        .await;
        pg.raw_import.push(records / write);
        pg.raw_export.push(records / read);
        eprintln!("round {round} done");
    }
    let after = disk::fdatasync_time(dir.path());
    println!(
        "archive of {events} events, {} records ({} KiB), {rounds} interleaved rounds, medians",
        lines.len(),
        archive.len() / 1024
    );
    println!(
        "disk: fdatasync {before:?} before ({}), {after:?} after ({})",
        disk::mode(before),
        disk::mode(after)
    );
    sqlite.print("SQLite");
    pg.print("Postgres");
}
