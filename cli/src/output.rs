//! Printing: tables for people, JSON for scripts, and stdout that survives a closed pipe.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use comfy_table::{presets, ContentArrangement, Table};
use hakiri_core::Timestamp;
use serde::Serialize;

use crate::cli::OutputFormat;

// Set once stdout's reader has gone (`hakiri events | head`): further output is dropped, but the
// command still finishes what it was doing rather than dying halfway through a change.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether stdout's reader has gone away (a follow loop should stop then).
pub(crate) fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Writes `text` and a newline to stdout.
pub(crate) fn line(text: impl AsRef<str>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    let written = out
        .write_all(text.as_ref().as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if written.is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Writes `value` as pretty JSON to stdout.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) {
    line(serde_json::to_string_pretty(value).unwrap_or_else(|e| {
        // Every value printed is built from serialisable catalog types; this cannot happen.
        format!("{{\"error\": \"cannot serialise output: {e}\"}}")
    }));
}

/// Writes `value` as one line of JSON to stdout (streams: `--follow`, the reconcile loop).
pub(crate) fn json_line<T: Serialize + ?Sized>(value: &T) {
    line(serde_json::to_string(value).unwrap_or_default());
}

/// Progress and notes for people: stderr, so stdout stays clean for `--output json`.
pub(crate) fn note(text: impl AsRef<str>) {
    let _ = writeln!(io::stderr().lock(), "{}", text.as_ref());
}

/// A borderless, kubectl-style table with the given header.
pub(crate) fn table<'a>(header: impl IntoIterator<Item = &'a str>) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.into_iter().collect::<Vec<_>>());
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// Prints a table, or `empty` when it has no rows.
pub(crate) fn print_table(table: &Table, empty: &str) {
    if table.row_count() == 0 {
        line(empty);
    } else {
        // Trailing spaces come from the right padding of the last column.
        let text = table.to_string();
        for row in text.lines() {
            line(row.trim_end());
        }
    }
}

/// Prints `value` as JSON, or runs `human` to print it for people.
pub(crate) fn emit<T: Serialize + ?Sized>(format: OutputFormat, value: &T, human: impl FnOnce()) {
    match format {
        OutputFormat::Json => json(value),
        OutputFormat::Table => human(),
    }
}

/// A timestamp for people: `2026-11-22 05:23:58Z` (UTC, seconds).
pub(crate) fn time(t: Timestamp) -> String {
    t.to_datetime().format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// An optional timestamp, `-` when absent.
pub(crate) fn time_opt(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_owned(), time)
}

/// A duration for people, to the millisecond below a minute and to the second above.
pub(crate) fn duration(d: Duration) -> String {
    let rounded = if d >= Duration::from_secs(60) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    humantime::format_duration(rounded).to_string()
}

/// Cuts `text` to `max` characters, marking the cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    let first_line = text.lines().next().unwrap_or("");
    if first_line.chars().count() <= max && first_line.len() == text.len() {
        return text.to_owned();
    }
    let cut: String = first_line.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_durations_and_truncation_read_well() {
        assert_eq!(time(Timestamp::from_millis(1_000)), "1970-01-01 00:00:01Z");
        assert_eq!(time_opt(None), "-");
        assert_eq!(duration(Duration::from_micros(1_500_700)), "1s 500ms");
        assert_eq!(duration(Duration::from_millis(61_500)), "1m 1s");
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("a long message", 7), "a long…");
        assert_eq!(truncate("two\nlines", 20), "two…");
    }

    #[test]
    fn tables_have_no_borders_and_no_trailing_space() {
        let mut t = table(["ID", "STATUS"]);
        t.add_row(["orders", "ok"]);
        let text = t.to_string();
        assert!(text.contains("ID"), "{text}");
        assert!(!text.contains('|') && !text.contains('│'), "{text}");
    }
}
