//! The driver logs the catalog's statements below WARN, slow ones included, so a program logging
//! warnings (the CLI by default) shows no SQL.
//!
//! A test binary of its own: the subscriber is the process's global one, so no other test's
//! thread can leave the driver's log call sites cached as disabled before it is set.

use std::io::Write;
use std::sync::{Arc, Mutex};

use hakiri_catalog_postgres::PostgresConfig;
use hakiri_test_kit::postgres;

/// Log output, shared with the subscriber that writes it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn statements_even_slow_ones_are_logged_below_warn() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let url = postgres::shared().url();
    let pool = PostgresConfig::default()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}. {}", postgres::HOW_TO_GET_ONE));
    // Slower than the one-second threshold for slow statements.
    sqlx::query("SELECT pg_sleep(1.1)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("pg_sleep")).collect();
    assert!(
        !lines.is_empty(),
        "the statement was not logged at all:\n{text}"
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.contains(" WARN ") && !l.contains(" ERROR ")),
        "{lines:#?}"
    );
}
