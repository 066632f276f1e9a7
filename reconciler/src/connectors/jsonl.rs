//! The `jsonl` connector: newline-delimited JSON files, one directory per stream, read
//! incrementally by a monotonic cursor field. The module docs of [`crate::connectors`] hold
//! the config reference and the delivery contract.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use hakiri_core::cursor::{json_type, Position};
use hakiri_core::{ConnectorConfig, CursorKind, CursorValue, PipelineSpec, Schema, StreamName};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::fs::{self, File};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Take};

use super::fields::{decode, dir_streams, non_empty_path, FieldError, NonEmpty, Positive};
use super::infer::Inference;
use super::{input_error, stream_dir_name, Output, DEFAULT_CHECKPOINT_EVERY, MAX_LINE_BYTES};
use crate::connector::{Connector, ConnectorError, RunContext, SpecProblem};

/// Reads `<input>/<stream>/*.jsonl` incrementally by a cursor field and copies what it reads to
/// `<output>/<stream>/<run id>.jsonl`. Registered as `"jsonl"` by [`super::builtin`].
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonlConnector;

#[async_trait]
impl Connector for JsonlConnector {
    fn check(&self, spec: &PipelineSpec) -> Result<(), SpecProblem> {
        let config =
            Config::decode(&spec.config).map_err(|e| SpecProblem::config(e.in_config("jsonl")))?;
        check_kind(spec.cursor_kind, &config).map_err(SpecProblem::cursor_kind)
    }

    async fn run(&self, ctx: &RunContext) -> Result<(), ConnectorError> {
        let config = Config::parse(ctx)?;
        check_kind(ctx.pipeline().spec.cursor_kind, &config).map_err(|message| {
            ConnectorError::permanent(format!("pipeline {}: {message}", ctx.pipeline().id()))
        })?;
        for (stream, dir) in config.streams().await? {
            ctx.check_cancelled()?;
            StreamRun::start(ctx, &config, stream, dir)
                .await?
                .run()
                .await?;
        }
        Ok(())
    }
}

/// Refused before anything runs: the cursor is the largest value of the cursor field read.
fn check_kind(kind: CursorKind, config: &Config) -> Result<(), String> {
    if kind == CursorKind::Monotonic {
        return Ok(());
    }
    Err(format!(
        "the jsonl connector needs cursor_kind = \"monotonic\" (its cursor is the largest value \
         of {:?} read so far), not {kind:?}",
        config.cursor_field.0
    ))
}

/// The config, as decoded: see the module docs of [`crate::connectors`] for the fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(deserialize_with = "non_empty_path")]
    input: PathBuf,
    #[serde(deserialize_with = "non_empty_path")]
    output: PathBuf,
    cursor_field: NonEmpty,
    #[serde(default, deserialize_with = "dir_streams")]
    streams: Option<Vec<StreamName>>,
    key: Option<Vec<String>>,
    checkpoint_every: Option<Positive>,
}

impl Config {
    fn parse(ctx: &RunContext) -> Result<Self, ConnectorError> {
        Self::decode(ctx.config()).map_err(|e| e.in_config("jsonl"))
    }

    fn decode(config: &ConnectorConfig) -> Result<Self, FieldError> {
        let config: Self = decode(config.as_map())?;
        // Output files inside a stream's input directory would be read back as input.
        if config.output == config.input {
            return Err(FieldError::new("output", "must not be the input directory"));
        }
        Ok(config)
    }

    fn checkpoint_every(&self) -> u64 {
        self.checkpoint_every
            .map_or(DEFAULT_CHECKPOINT_EVERY, Positive::get)
    }

    /// The streams to read, in name order, with their input directories.
    async fn streams(&self) -> Result<Vec<(StreamName, PathBuf)>, ConnectorError> {
        if let Some(streams) = &self.streams {
            let mut found = Vec::with_capacity(streams.len());
            for stream in streams {
                let dir = self.input.join(stream.as_str());
                match fs::metadata(&dir).await {
                    Ok(meta) if meta.is_dir() => found.push((stream.clone(), dir)),
                    Ok(_) => {
                        return Err(ConnectorError::permanent(format!(
                            "jsonl: stream {stream}: {} is not a directory",
                            dir.display()
                        )))
                    }
                    Err(e) => return Err(input_error(&dir, &e)),
                }
            }
            return Ok(found);
        }
        let mut entries = fs::read_dir(&self.input)
            .await
            .map_err(|e| input_error(&self.input, &e))?;
        let mut found = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| input_error(&self.input, &e))?
        {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(ConnectorError::permanent(format!(
                    "jsonl: {} is not a valid UTF-8 stream name; rename it or list \"streams\"",
                    path.display()
                )));
            };
            // Hidden entries are tooling's (`.git`, editors' swap directories), not streams.
            if name.starts_with('.') {
                continue;
            }
            let meta = fs::metadata(&path)
                .await
                .map_err(|e| input_error(&path, &e))?;
            if !meta.is_dir() {
                continue;
            }
            let stream = stream_dir_name(&name).map_err(|problem| {
                ConnectorError::permanent(format!(
                    "jsonl: input directory {} {problem}; rename it or list \"streams\"",
                    path.display()
                ))
            })?;
            found.push((stream, path));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }
}

/// One stream's share of a run.
struct StreamRun<'a> {
    ctx: &'a RunContext,
    config: &'a Config,
    stream: StreamName,
    dir: PathBuf,
    output: Output,
    /// The stream's current schema version, as this run last saw or reported it.
    schema: Option<Schema>,
    /// The stream's cursor: its value when the run began, then its last checkpoint.
    cursor: Option<Position>,
}

/// What the first pass over a file found.
struct Scan {
    /// The file's length when scanned; the copy reads no further.
    len: u64,
    /// Records past the cursor.
    selected: u64,
    /// Whether the selected records are in cursor order.
    sorted: bool,
    inference: Inference,
}

impl<'a> StreamRun<'a> {
    async fn start(
        ctx: &'a RunContext,
        config: &'a Config,
        stream: StreamName,
        dir: PathBuf,
    ) -> Result<Self, ConnectorError> {
        let cursor = match ctx.cursor(&stream) {
            None => None,
            Some(value) => Some(Position::from_json(value.as_json()).map_err(|e| {
                ConnectorError::permanent(format!(
                    "jsonl: stream {stream}: the stored cursor {value} is unusable ({e}); reset it"
                ))
            })?),
        };
        let schema = ctx.current_schema(&stream).await?;
        let output = Output::new(
            config.output.join(stream.as_str()),
            format!("{}.jsonl", ctx.run().id),
        );
        Ok(Self {
            ctx,
            config,
            stream,
            dir,
            output,
            schema,
            cursor,
        })
    }

    async fn run(mut self) -> Result<(), ConnectorError> {
        let files = self.files().await?;
        for (i, file) in files.iter().enumerate() {
            if let Some(next) = files.get(i + 1) {
                if self.read_before(next).await? {
                    continue;
                }
            }
            self.file(file).await?;
        }
        Ok(())
    }

    /// Whether every record of the files before `next` is at or before the cursor, so they need
    /// not be read again: under the ordering contract each is smaller than any record of `next`,
    /// so it is enough that `next`'s first record is. Without this every run would re-read the
    /// stream's whole history; with it, at most one fully read file is scanned again.
    async fn read_before(&self, next: &Path) -> Result<bool, ConnectorError> {
        let Some(cursor) = &self.cursor else {
            return Ok(false);
        };
        let mut lines = Lines::open(next, u64::MAX).await?;
        while let Some((number, line)) = lines.next().await? {
            if let Some((_, first)) = self.parse(next, number, line)? {
                return Ok(compare(&first, cursor, next, number)? != Ordering::Greater);
            }
        }
        Ok(false)
    }

    /// The stream's `.jsonl` files in name order.
    async fn files(&self) -> Result<Vec<PathBuf>, ConnectorError> {
        let mut entries = fs::read_dir(&self.dir)
            .await
            .map_err(|e| input_error(&self.dir, &e))?;
        let mut files = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| input_error(&self.dir, &e))?
        {
            let path = entry.path();
            if path.extension().is_none_or(|ext| ext != "jsonl") {
                continue;
            }
            let meta = fs::metadata(&path)
                .await
                .map_err(|e| input_error(&path, &e))?;
            if meta.is_file() {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Reads one file: a first pass validates it, selects the records past the cursor and infers
    /// their schema, which is reported before the second pass copies them. Two passes rather
    /// than one so that no record is written before its schema is accepted, and so that a
    /// checkpoint inside the file is only taken when the file is known to be in cursor order.
    async fn file(&mut self, path: &Path) -> Result<(), ConnectorError> {
        let start = self.cursor.clone();
        let scan = self.scan(path, start.as_ref()).await?;
        if scan.selected == 0 {
            return Ok(());
        }
        let schema = scan
            .inference
            .schema(self.schema.as_ref(), self.config.key.as_deref())
            .map_err(|e| {
                ConnectorError::permanent(format!(
                    "{}: its records give stream {} an invalid schema: {e}",
                    path.display(),
                    self.stream
                ))
            })?;
        if self.schema.as_ref() != Some(&schema) {
            self.ctx
                .observe_schema(&self.stream, schema.clone())
                .await?;
            self.schema = Some(schema);
        }
        self.copy(path, start.as_ref(), &scan).await
    }

    async fn scan(&self, path: &Path, start: Option<&Position>) -> Result<Scan, ConnectorError> {
        let mut lines = Lines::open(path, u64::MAX).await?;
        let mut scan = Scan {
            len: 0,
            selected: 0,
            sorted: true,
            inference: Inference::default(),
        };
        let mut max: Option<Position> = None;
        while let Some((number, line)) = lines.next().await? {
            self.ctx.check_cancelled()?;
            let Some((record, position)) = self.parse(path, number, line)? else {
                continue;
            };
            if !self.is_past(&position, start, path, number)? {
                continue;
            }
            // Comparing with the maximum also catches a cursor field that changes between number
            // and string, which has no order.
            let order = match &max {
                None => Ordering::Greater,
                Some(max) => compare(&position, max, path, number)?,
            };
            match order {
                Ordering::Less => scan.sorted = false,
                Ordering::Equal => {}
                Ordering::Greater => {
                    CursorValue::new(position.to_json()).map_err(|e| {
                        ConnectorError::permanent(format!(
                            "{}:{}: cursor field {:?}: {e}",
                            path.display(),
                            number,
                            self.config.cursor_field.0
                        ))
                    })?;
                    max = Some(position);
                }
            }
            scan.inference.add(&record);
            scan.selected += 1;
        }
        scan.len = lines.consumed;
        debug_assert_eq!(scan.selected, scan.inference.records());
        Ok(scan)
    }

    async fn copy(
        &mut self,
        path: &Path,
        start: Option<&Position>,
        scan: &Scan,
    ) -> Result<(), ConnectorError> {
        let mut pending = Pending::default();
        let result = self.copy_lines(path, start, scan, &mut pending).await;
        // Records written after the last checkpoint were still read: count them however the
        // copy ended.
        if pending.records > 0 {
            self.ctx
                .record(&self.stream, pending.records, pending.bytes);
        }
        result
    }

    async fn copy_lines(
        &mut self,
        path: &Path,
        start: Option<&Position>,
        scan: &Scan,
        pending: &mut Pending,
    ) -> Result<(), ConnectorError> {
        let mut lines = Lines::open(path, scan.len).await?;
        let mut written = 0u64;
        let mut previous: Option<Position> = None;
        let mut max: Option<Position> = None;
        while let Some((number, line)) = lines.next().await? {
            let Some((_, position)) = self.parse(path, number, line)? else {
                continue;
            };
            if !self.is_past(&position, start, path, number)? {
                continue;
            }
            // In a file in cursor order, once the cursor strictly increases every record up to the
            // previous one has been written, so the previous position is a safe checkpoint (ties
            // are never split). In any other file only the end is safe.
            if scan.sorted && pending.records >= self.config.checkpoint_every() {
                if let Some(previous) = &previous {
                    if compare(&position, previous, path, number)? == Ordering::Greater {
                        self.checkpoint(previous.clone(), pending).await?;
                    }
                }
            }
            // Checked after the checkpoint above, so a stop requested during it writes nothing
            // more.
            self.ctx.check_cancelled()?;
            self.output.write(line).await?;
            self.output.write(b"\n").await?;
            pending.records += 1;
            pending.bytes += line.len() as u64 + 1;
            written += 1;
            let greater = match &max {
                None => true,
                Some(max) => compare(&position, max, path, number)? == Ordering::Greater,
            };
            if greater {
                max = Some(position.clone());
            }
            previous = Some(position);
        }
        if written != scan.selected {
            return Err(ConnectorError::transient(format!(
                "{} changed while it was being read ({} records past the cursor, then {written}); \
                 files must be complete when they appear: write them elsewhere, then rename",
                path.display(),
                scan.selected
            )));
        }
        if let Some(max) = max {
            self.checkpoint(max, pending).await?;
        }
        Ok(())
    }

    /// Makes the output durable, then records the position after it.
    async fn checkpoint(
        &mut self,
        position: Position,
        pending: &mut Pending,
    ) -> Result<(), ConnectorError> {
        self.output.sync().await?;
        self.ctx
            .record(&self.stream, pending.records, pending.bytes);
        *pending = Pending::default();
        if self.cursor.as_ref() == Some(&position) {
            return Ok(());
        }
        let value = CursorValue::new(position.to_json())
            .map_err(|e| ConnectorError::permanent(format!("stream {}: {e}", self.stream)))?;
        self.ctx.checkpoint(&self.stream, value).await?;
        self.cursor = Some(position);
        Ok(())
    }

    /// A line's record and cursor position; `None` for a blank line.
    fn parse(
        &self,
        path: &Path,
        number: u64,
        line: &[u8],
    ) -> Result<Option<Parsed>, ConnectorError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let at = || format!("{}:{number}", path.display());
        let record = match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(record)) => record,
            Ok(other) => {
                return Err(ConnectorError::permanent(format!(
                    "{}: expected a JSON object, found {}",
                    at(),
                    json_type(&other)
                )))
            }
            Err(e) => {
                return Err(ConnectorError::permanent(format!(
                    "{}: not valid JSON: {e}",
                    at()
                )))
            }
        };
        let field = &self.config.cursor_field.0;
        let position = match record.get(field) {
            None => {
                return Err(ConnectorError::permanent(format!(
                    "{}: the cursor field {field:?} is missing",
                    at()
                )))
            }
            Some(Value::Null) => {
                return Err(ConnectorError::permanent(format!(
                    "{}: the cursor field {field:?} is null",
                    at()
                )))
            }
            Some(value) => Position::from_json(value).map_err(|e| {
                ConnectorError::permanent(format!("{}: cursor field {field:?}: {e}", at()))
            })?,
        };
        Ok(Some((record, position)))
    }

    /// Whether `position` is past the cursor `start` (everything is, without a cursor).
    fn is_past(
        &self,
        position: &Position,
        start: Option<&Position>,
        path: &Path,
        number: u64,
    ) -> Result<bool, ConnectorError> {
        match start {
            None => Ok(true),
            Some(start) => Ok(compare(position, start, path, number)? == Ordering::Greater),
        }
    }
}

/// A line's record and its cursor position.
type Parsed = (Map<String, Value>, Position);

/// Written but not yet checkpointed.
#[derive(Default)]
struct Pending {
    records: u64,
    bytes: u64,
}

fn compare(
    a: &Position,
    b: &Position,
    path: &Path,
    number: u64,
) -> Result<Ordering, ConnectorError> {
    a.compare(b).map_err(|e| {
        ConnectorError::permanent(format!("{}:{number}: cursor field: {e}", path.display()))
    })
}

/// The lines of a file, without their line endings, up to a length limit.
struct Lines {
    path: PathBuf,
    reader: BufReader<Take<File>>,
    buf: Vec<u8>,
    /// The current line's number (1-based).
    number: u64,
    /// Bytes read so far.
    consumed: u64,
}

impl Lines {
    async fn open(path: &Path, limit: u64) -> Result<Self, ConnectorError> {
        let file = File::open(path).await.map_err(|e| input_error(path, &e))?;
        Ok(Self {
            path: path.to_owned(),
            reader: BufReader::with_capacity(64 * 1024, file.take(limit)),
            buf: Vec::new(),
            number: 0,
            consumed: 0,
        })
    }

    /// The next line and its number (a last line without a newline included), or `None` at the
    /// end.
    async fn next(&mut self) -> Result<Option<(u64, &[u8])>, ConnectorError> {
        self.buf.clear();
        let read = (&mut self.reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .await
            .map_err(|e| {
                ConnectorError::permanent(format!(
                    "cannot read {}:{}: {e}",
                    self.path.display(),
                    self.number + 1
                ))
            })?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        if read > MAX_LINE_BYTES {
            return Err(ConnectorError::permanent(format!(
                "{}:{}: the line is longer than {} MiB",
                self.path.display(),
                self.number,
                MAX_LINE_BYTES >> 20
            )));
        }
        self.consumed += read as u64;
        let mut line = &self.buf[..];
        if let Some(rest) = line.strip_suffix(b"\n") {
            line = rest.strip_suffix(b"\r").unwrap_or(rest);
        }
        Ok(Some((self.number, line)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode(value: Value) -> Result<Config, String> {
        Config::decode(&ConnectorConfig::new(value).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_good_config_keeps_every_field() {
        let config = decode(json!({
            "input": "in", "output": "out", "cursor_field": "updated_at",
            "streams": ["orders", "users"], "key": ["order_id"], "checkpoint_every": 500
        }))
        .unwrap();
        assert_eq!(
            (config.input.to_str(), config.output.to_str()),
            (Some("in"), Some("out"))
        );
        assert_eq!(config.cursor_field.0, "updated_at");
        let streams: Vec<&str> = config
            .streams
            .iter()
            .flatten()
            .map(StreamName::as_str)
            .collect();
        assert_eq!(streams, ["orders", "users"]);
        assert_eq!(config.key.as_deref(), Some(&["order_id".to_owned()][..]));
        assert_eq!(config.checkpoint_every(), 500);

        let defaults =
            decode(json!({"input": "in", "output": "out", "cursor_field": "seq", "key": null}))
                .unwrap();
        assert!(defaults.streams.is_none() && defaults.key.is_none());
        assert_eq!(defaults.checkpoint_every(), DEFAULT_CHECKPOINT_EVERY);
    }

    #[test]
    fn each_refusal_names_the_field() {
        let good = json!({"input": "in", "output": "out", "cursor_field": "seq"});
        let with = |field: &str, value: Value| {
            let mut config = good.clone();
            config[field] = value;
            config
        };
        for (value, expected) in [
            (
                json!({"input": "in", "output": "out"}),
                "missing field `cursor_field`",
            ),
            (
                with("cursor_field", json!("")),
                "cursor_field: must not be empty",
            ),
            (
                with("input", json!(null)),
                "input: invalid type: null, expected a string",
            ),
            (
                with("output", json!("in")),
                "output: must not be the input directory",
            ),
            (
                with("streams", json!(["a", "b/c"])),
                "streams[1]: names stream \"b/c\", which is not a single directory name",
            ),
            (
                with("key", json!("id")),
                "key: invalid type: string \"id\", expected a sequence",
            ),
            (
                with("checkpoint_every", json!(0)),
                "checkpoint_every: invalid value: integer `0`, expected a positive integer",
            ),
            (
                with("stream", json!(["a"])),
                "stream: unknown field `stream`, expected one of `input`, `output`",
            ),
        ] {
            let error = decode(value.clone())
                .err()
                .unwrap_or_else(|| panic!("{value}"));
            assert!(error.starts_with(expected), "{value}: {error}");
        }
    }
}
