//! `hakiri.toml`: the declared pipelines of a project, read and validated as a whole before
//! anything is written.
//!
//! ```toml
//! [[pipeline]]
//! id = "orders"
//! connector = "jsonl"
//! cursor_kind = "monotonic"
//! schedule = { every = "15m" }      # or "manual", or { cron = "0 */5 * * * *" }
//! config = { input = "data", output = "out", cursor_field = "updated_at" }
//! ```
//!
//! Every problem is reported with the file, line and column (TOML spans) and changes nothing.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use hakiri_core::pipeline::CRON_FORMAT;
use hakiri_core::{PipelineId, PipelineSpec};
use hakiri_reconciler::Connectors;
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{CliError, CliResult, Location};

/// The file as written: only `[[pipeline]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    pipeline: Vec<Spanned<PipelineSpec>>,
}

/// Reads and validates a manifest file.
///
/// # Errors
/// An invalid-input error naming the file, line and column, or one saying the file cannot be read.
pub(crate) fn load(path: &Path, connectors: &Connectors) -> CliResult<Vec<PipelineSpec>> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        CliError::invalid("manifest", format!("cannot read {name}: {e}"))
            .hint("pass the file with -f PATH (the default is ./hakiri.toml)")
    })?;
    read(&name, bytes, connectors)
}

/// Decodes and parses the bytes of a manifest named `name` (see [`parse`]).
pub(crate) fn read(
    name: &str,
    bytes: Vec<u8>,
    connectors: &Connectors,
) -> CliResult<Vec<PipelineSpec>> {
    parse(name, &decode(name, bytes)?, connectors)
}

/// The file's text, or an error at its first byte that is not UTF-8 (TOML is UTF-8 only).
fn decode(name: &str, bytes: Vec<u8>) -> CliResult<String> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let byte = e.as_bytes()[offset];
        // The valid prefix is kept as is, so `offset` is the same in the lossy text, where the
        // bad bytes show as U+FFFD.
        let text = String::from_utf8_lossy(e.as_bytes());
        at(
            name,
            &text,
            Some(offset..offset + char::REPLACEMENT_CHARACTER.len_utf8()),
            &format!("byte 0x{byte:02x} is not UTF-8 (TOML files must be UTF-8 text)"),
        )
        .hint(format!(
            "save {name} as UTF-8 (from Latin-1: `iconv -f latin1 -t utf-8`)"
        ))
    })
}

/// Parses and validates manifest text; `name` is used in messages.
///
/// # Errors
/// An invalid-input error at the first problem: TOML syntax, an unknown field, a bad value
/// (cron, duration, id, retry policy…), a duplicate pipeline id, an interval under one second, a
/// config or cursor kind its connector (one of `connectors`) refuses.
pub(crate) fn parse(
    name: &str,
    text: &str,
    connectors: &Connectors,
) -> CliResult<Vec<PipelineSpec>> {
    // Parsed once for its spans, which locate the problems serde cannot see (duplicates).
    let document = DeTable::parse(text).map_err(|e| at(name, text, e.span(), e.message()))?;
    let file: ManifestFile =
        toml::from_str(text).map_err(|e| at(name, text, e.span(), e.message()))?;

    let mut first_seen: HashMap<PipelineId, usize> = HashMap::new();
    let mut specs = Vec::with_capacity(file.pipeline.len());
    for (index, entry) in file.pipeline.into_iter().enumerate() {
        let span = entry.span();
        let spec = entry.into_inner();
        let key_span = |key: &str| value_span(&document, index, key).unwrap_or(span.clone());
        if let Some(first) = first_seen.get(&spec.id) {
            return Err(at(
                name,
                text,
                Some(key_span("id")),
                &format!(
                    "duplicate pipeline id {:?}: it is already declared on line {first}; ids must be unique in a project",
                    spec.id.as_str()
                ),
            ));
        }
        if let Err(e) = spec.schedule.validate() {
            return Err(at(
                name,
                text,
                Some(key_span("schedule")),
                &core_message(&e),
            ));
        }
        if let Some(connector) = connectors.get(spec.connector.as_str()) {
            if let Err(problem) = connector.check(&spec) {
                return Err(at(
                    name,
                    text,
                    Some(key_span(problem.field)),
                    &format!("pipeline {}: {problem}", spec.id),
                ));
            }
        }
        first_seen.insert(spec.id.clone(), line_col(text, key_span("id").start).0);
        specs.push(spec);
    }
    Ok(specs)
}

/// The span of `key`'s value in the `index`-th `[[pipeline]]` table.
fn value_span(document: &Spanned<DeTable<'_>>, index: usize, key: &str) -> Option<Range<usize>> {
    let pipelines = document
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "pipeline")
        .map(|(_, v)| v)?;
    let DeValue::Array(items) = pipelines.get_ref() else {
        return None;
    };
    let DeValue::Table(table) = items.get(index)?.get_ref() else {
        return None;
    };
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v.span())
}

/// A catalog error's text without its "invalid argument: " prefix (in a file, it is implied).
fn core_message(error: &hakiri_core::Error) -> String {
    match error {
        hakiri_core::Error::InvalidArgument(message) => message.clone(),
        other => other.to_string(),
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// A position for an error the TOML parser reports without one. Its only such error is a dotted
/// key with more parts than its nesting limit (`recursion limit`): the first key with that many
/// parts is the one. `None` for anything else.
fn spanless(text: &str, message: &str) -> Option<Range<usize>> {
    // toml's limit: a key whose path (all parts but the last) has this many parts.
    const KEY_PARTS: usize = 81;
    if message != "recursion limit" {
        return None;
    }
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = line.len() - line.trim_start().len();
        let key = line[start..].trim_start_matches('[');
        let key_start = offset + line.len() - key.len();
        let end = key.find(['=', ']', '{', '#']).unwrap_or(key.len());
        if dotted_parts(&key[..end]) >= KEY_PARTS {
            return Some(key_start..key_start + key[..end].trim_end().len());
        }
        offset += line.len();
    }
    None
}

/// The parts of a dotted key: dots outside quotes, plus one.
fn dotted_parts(key: &str) -> usize {
    let mut quote = None;
    let mut parts = 1;
    for c in key.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '.') => parts += 1,
            _ => {}
        }
    }
    parts
}

/// An error at `span` of `name`: the message with `file:line:column`, the line quoted with a caret.
fn at(name: &str, text: &str, span: Option<Range<usize>>, message: &str) -> CliError {
    // Messages from the TOML parser and from serde may start with the core error's prefix.
    let message = message
        .trim()
        .trim_start_matches("invalid argument: ")
        .to_owned();
    let mut hints = vec![format!(
        "fix {name} and apply it again; nothing was applied"
    )];
    // A cron error ends with how to write one: shown as a hint of its own.
    let message = match message.strip_suffix(CRON_FORMAT) {
        Some(reason) => {
            let mut format = CRON_FORMAT.to_owned();
            format[..1].make_ascii_lowercase();
            hints.insert(0, format);
            reason.trim_end().to_owned()
        }
        None => message,
    };
    let Some(span) = span.or_else(|| spanless(text, &message)) else {
        let error = CliError::invalid(
            "manifest",
            format!("{name}: {message} (the TOML parser gives no position for this error)"),
        );
        return hints.into_iter().fold(error, CliError::hint);
    };
    let (line, column) = line_col(text, span.start);
    let source_line = text.lines().nth(line - 1).unwrap_or("");
    let width = text
        .get(span.clone())
        .map_or(1, |s| s.lines().next().unwrap_or("").chars().count())
        .clamp(
            1,
            source_line
                .chars()
                .count()
                .saturating_sub(column - 1)
                .max(1),
        );
    let gutter = line.to_string().len();
    let context = format!(
        "{:gutter$} |\n{line} | {source_line}\n{:gutter$} | {}{}",
        "",
        "",
        " ".repeat(column - 1),
        "^".repeat(width),
    );
    let error = CliError::invalid("manifest", format!("{name}:{line}:{column}: {message}"))
        .context(context)
        .location(Location {
            file: name.to_owned(),
            line,
            column,
        });
    hints.into_iter().fold(error, CliError::hint)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hakiri_core::Schedule;
    use hakiri_reconciler::builtin;

    use super::*;

    const GOOD: &str = r#"
[[pipeline]]
id = "orders"
connector = "jsonl"
cursor_kind = "monotonic"
schedule = { every = "15m" }
config = { input = "data/orders", output = "out", cursor_field = "updated_at" }

[[pipeline]]
id = "logs"
connector = "tail"
cursor_kind = "opaque"
schedule = { cron = "*/5 * * * *" }
config = { input = "app.log", output = "out", stream = "logs" }
"#;

    fn error(text: &str) -> String {
        parse("hakiri.toml", text, &builtin())
            .unwrap_err()
            .render_text()
    }

    #[test]
    fn a_valid_file_gives_every_pipeline_in_order() {
        let specs = parse("hakiri.toml", GOOD, &builtin()).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].id.as_str(), "orders");
        assert_eq!(
            specs[0].schedule,
            Schedule::Interval(Duration::from_secs(900))
        );
        assert_eq!(specs[0].config.as_map()["cursor_field"], "updated_at");
        assert!(matches!(specs[1].schedule, Schedule::Cron(_)));
        assert!(parse("empty.toml", "", &builtin()).unwrap().is_empty());
        let no_config = GOOD.replace(
            "config = { input = \"app.log\", output = \"out\", stream = \"logs\" }\n",
            "",
        );
        let refused = error(&no_config);
        assert!(
            refused.contains("hakiri.toml:9:1: pipeline logs: tail config: missing field `input`"),
            "{refused}"
        );
    }

    #[test]
    fn an_unknown_field_is_named_with_its_line() {
        let text = GOOD.replace("schedule = { every", "shedule = { every");
        let e = error(&text);
        assert!(
            e.starts_with("error: hakiri.toml:6:1: unknown field `shedule`"),
            "{e}"
        );
        assert!(e.contains("6 | shedule = { every = \"15m\" }"), "{e}");
        assert!(e.contains("nothing was applied"), "{e}");
    }

    #[test]
    fn a_bad_cron_is_named_with_its_line() {
        let e = error(&GOOD.replace("*/5 * * * *", "61 * * * *"));
        assert!(e.contains("hakiri.toml:13:"), "{e}");
        assert!(e.contains("cron expression"), "{e}");
        assert!(!e.contains("invalid argument: "), "{e}");
        // The parser's reason, on the error's line, and a hint with valid expressions.
        assert!(
            e.starts_with("error: hakiri.toml:13:12: cron expression \"61 * * * *\" is invalid: Minutes must be less than 59. ('61' specified.)\n"),
            "{e}"
        );
        assert!(
            e.contains(
                "\nhint: write five fields, `minute hour day-of-month month day-of-week` (UTC)"
            ) && e.contains("\"*/15 * * * *\" is every 15 minutes"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_duration_is_named_with_its_line() {
        let e = error(&GOOD.replace("\"15m\"", "\"fortnightly\""));
        assert!(e.contains("hakiri.toml:6:"), "{e}");
    }

    #[test]
    fn a_too_short_interval_is_named_with_its_line() {
        let e = error(&GOOD.replace("\"15m\"", "\"10ms\""));
        assert!(
            e.contains("hakiri.toml:6:12: interval 10ms is shorter"),
            "{e}"
        );
        assert!(e.contains("^^^"), "{e}");
    }

    #[test]
    fn a_duplicate_id_names_both_lines() {
        let e = error(&GOOD.replace("id = \"logs\"", "id = \"orders\""));
        assert!(
            e.contains("hakiri.toml:10:6: duplicate pipeline id \"orders\": it is already declared on line 3"),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_and_bad_ids_are_located() {
        let e = error("[[pipeline]\nid = 1");
        assert!(e.contains("hakiri.toml:1:"), "{e}");
        let e = error(&GOOD.replace("id = \"logs\"", "id = \"-logs\""));
        assert!(
            e.contains("hakiri.toml:10:") && e.contains("must start with"),
            "{e}"
        );
        let e = error("[[pipelines]]\nid = \"a\"");
        assert!(e.contains("unknown field `pipelines`"), "{e}");
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("x", 99), (1, 2));
    }

    #[test]
    fn a_config_its_connector_refuses_is_named_with_its_line() {
        let singer = |kind: &str, config: &str| {
            format!(
                "[[pipeline]]\nid = \"taps\"\nconnector = \"singer\"\ncursor_kind = \"{kind}\"\nconfig = {config}\n"
            )
        };
        let good = r#"{ command = "tap-jsonl", output = "out" }"#;
        assert_eq!(
            parse("hakiri.toml", &singer("opaque", good), &builtin())
                .unwrap()
                .len(),
            1
        );
        let e = error(&singer("monotonic", good));
        assert!(e.starts_with("error: hakiri.toml:4:15: pipeline taps: singer pipelines need cursor_kind = \"opaque\""), "{e}");
        let e = error(&singer("opaque", r#"{ output = "out" }"#));
        assert!(
            e.starts_with(
                "error: hakiri.toml:5:10: pipeline taps: singer config: `command` or `pip_url` is required"
            ),
            "{e}"
        );
        let e = error(&singer(
            "opaque",
            r#"{ command = "t", output = "o", stream = ["x"] }"#,
        ));
        assert!(
            e.starts_with(
                "error: hakiri.toml:5:10: pipeline taps: singer config: stream: unknown field `stream`"
            ),
            "{e}"
        );
    }
}
