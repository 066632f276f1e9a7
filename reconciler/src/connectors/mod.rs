//! The built-in connectors: `jsonl` (newline-delimited JSON files read incrementally by a
//! monotonic cursor field), `tail` (an append-only file read by byte offset, an opaque cursor)
//! `singer` (a Singer tap, with Hakiri as its loader: see [`SingerConnector`]) and `airbyte` (an
//! Airbyte source, Hakiri its loader: see [`AirbyteConnector`]). [`builtin`] registers them
//! under those names.
//!
//! Paths in configs are taken relative to the reconciler process's working directory.
//!
//! # Delivery: at least once, bounded by checkpoints
//! Both connectors write records to their output and make the output durable (flush and
//! `fsync`) *before* they checkpoint the position after them. After a crash, a kill or a lost
//! lease, the next run starts from the last checkpoint: nothing before it is lost or written
//! twice, and records written after it are written again (duplicates are possible only past the
//! last checkpoint). Each run writes its own output file named after the run id, so a re-read
//! never rewrites an earlier run's file; deduplicate downstream by key if you need exactly once.
//!
//! # `jsonl`
//! Pipeline `cursor_kind = "monotonic"`.
//!
//! | field | required | meaning |
//! |---|---|---|
//! | `input` | yes | directory holding one sub-directory per stream; each holds `*.jsonl` files |
//! | `output` | yes | directory; each run writes `<output>/<stream>/<run id>.jsonl` |
//! | `cursor_field` | yes | the record field the cursor follows |
//! | `streams` | no | stream names to read (default: every sub-directory of `input` not starting with `.`) |
//! | `key` | no | the streams' key columns (default: `["id"]` when every record has a non-null `id`, else none) |
//! | `checkpoint_every` | no | checkpoint at least every this many records within a file (default 1000) |
//!
//! Files are read in name order; lines are JSON objects (blank lines are skipped). Only records
//! whose cursor field is greater than the stream's cursor are read. The cursor field must be a
//! JSON number (an integer within ±2^53) or a fixed-width UTC RFC 3339 string
//! (`2026-01-15T12:00:00.000Z`): strings compare bytewise, so other text formats misorder. Every
//! record of a later file must have a greater cursor than every record of earlier files (name
//! files by export time); within a file any order is fine. This is also what lets a run skip
//! files read before: a file is not read again once the next file starts at or before the cursor.
//! A file is checkpointed at its end, and also every `checkpoint_every` records when its records
//! are in cursor order. Files must be
//! complete when they appear (write to another name, then rename); only names ending in
//! `.jsonl` are read.
//!
//! Each file's schema is inferred from the records it contributes and reported before any of
//! them is written: booleans, integers, other numbers, RFC 3339 strings (timestamps) and other
//! strings map to their column types, objects and arrays (and mixed types) to `json`; a field
//! missing or null in some record is nullable, and a field never seen with a value is not a
//! column yet. The batch is merged with the stream's current version, so a new field is an added
//! nullable column (additive) and a field of a new, incompatible type is a retyped column
//! (breaking: held by the default policy, which pauses the pipeline until an operator decides).
//!
//! ```json
//! { "input": "data/in", "output": "data/out", "cursor_field": "updated_at",
//!   "streams": ["orders"], "key": ["order_id"], "checkpoint_every": 500 }
//! ```
//!
//! # `tail`
//! Pipeline `cursor_kind = "opaque"`.
//!
//! | field | required | meaning |
//! |---|---|---|
//! | `input` | yes | an append-only file |
//! | `output` | yes | directory; each run writes `<output>/<stream>/<run id>[.<input's extension>]` |
//! | `stream` | yes | the stream name the file's lines belong to |
//! | `checkpoint_every` | no | checkpoint at least every this many lines (default 1000) |
//!
//! Copies complete lines (ending in `\n`) verbatim, from the cursor's offset to the end of the file
//! as it was when the run began; a final line still being written is left for the next run. The
//! cursor is a resume token `{"offset": <bytes>, "check": {"len": <n>, "fnv1a": "<hex>"}}`: the
//! check is a hash of the `n ≤ 64` bytes before the offset, so a file that was truncated (shorter
//! than the offset) or replaced (different bytes before it) fails the run with a permanent error
//! instead of silently skipping or re-reading data; reset the cursor to read the new file from
//! the start. The stream's schema is one required `line` column of type `string`.
//!
//! ```json
//! { "input": "/var/log/app/events.log", "output": "data/out", "stream": "events" }
//! ```
//!
//! # Errors
//! A bad config fails the run with a permanent error naming the connector and the field by its
//! path, then the problem: `jsonl config: streams[1]: names stream "a/b", which is not a single
//! directory name`, `singer config: target.pip_url: invalid type: sequence, expected a string`.
//! A field no table lists is refused by name (a misspelt optional field would otherwise be
//! ignored); an optional field given as `null` is the same as one left out. The `singer`
//! connector's config is also checked when its pipeline is declared (`hakiri apply`).
//!
//! An unreadable input or a malformed line (or one longer than 16 MiB) fails the run with a
//! permanent error naming `file:line`; an output that cannot be written fails it (transiently
//! when retrying may help, e.g. a full disk).

pub(crate) mod airbyte;
mod fields;
mod infer;
mod jsonl;
mod output;
pub(crate) mod singer;
mod tail;

use std::io;
use std::path::{Path, PathBuf};

use hakiri_core::{CursorKind, StreamName};
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncWriteExt, BufWriter};

pub use airbyte::AirbyteConnector;
pub use jsonl::JsonlConnector;
pub use singer::{PipRequirement, SingerConnector};
pub use tail::TailConnector;

use crate::connector::{ConnectorError, Connectors};

/// A registry holding the built-in connectors: [`JsonlConnector`] as `"jsonl"`,
/// [`TailConnector`] as `"tail"`, [`SingerConnector`] as `"singer"` and [`AirbyteConnector`] as
/// `"airbyte"`.
pub fn builtin() -> Connectors {
    Connectors::new()
        .with("airbyte", AirbyteConnector::default())
        .with("jsonl", JsonlConnector)
        .with("tail", TailConnector)
        .with("singer", SingerConnector::default())
}

/// Refuses a cursor kind other than opaque for `connector`'s pipelines, whose cursors hold
/// `what` (a tap's bookmark, a source's state, a resume token): nothing Hakiri can order.
fn opaque_only(kind: CursorKind, connector: &str, what: &str) -> Result<(), String> {
    if kind == CursorKind::Opaque {
        Ok(())
    } else {
        Err(format!(
            "{connector} pipelines need cursor_kind = \"opaque\": {what}, not a number or a \
             string Hakiri can order"
        ))
    }
}

/// Default of `checkpoint_every`.
const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;

/// Longest line either connector reads: a file without newlines must fail, not exhaust memory.
const MAX_LINE_BYTES: usize = 16 << 20;

/// Validates `name` as a stream name usable as a single directory name.
fn stream_dir_name(name: &str) -> Result<StreamName, String> {
    let stream = StreamName::new(name).map_err(|e| format!("names a bad stream: {e}"))?;
    if name == "." || name == ".." || name.contains(['/', '\\']) {
        return Err(format!(
            "names stream {name:?}, which is not a single directory name"
        ));
    }
    Ok(stream)
}

/// An input problem retrying cannot fix.
fn input_error(path: &Path, error: &io::Error) -> ConnectorError {
    ConnectorError::permanent(format!("cannot read {}: {error}", path.display()))
}

/// An output problem: permanent when retrying cannot help (permissions, a file where a directory
/// should be), transient otherwise (a full disk, an interrupted write).
fn output_error(path: &Path, error: &io::Error) -> ConnectorError {
    use io::ErrorKind::*;
    let message = format!("cannot write {}: {error}", path.display());
    match error.kind() {
        PermissionDenied | NotFound | InvalidInput | InvalidData | Unsupported | IsADirectory
        | NotADirectory | ReadOnlyFilesystem | AlreadyExists => ConnectorError::permanent(message),
        _ => ConnectorError::transient(message),
    }
}

/// Bytes an output buffers before it writes them to its file.
const OUTPUT_BUFFER_BYTES: usize = 1 << 20;

/// One run's output file for one stream, created on the first write.
struct Output {
    dir: PathBuf,
    path: PathBuf,
    file: Option<BufWriter<File>>,
    /// Bytes written since the last [`Output::sync`].
    unsynced: bool,
}

impl Output {
    fn new(dir: PathBuf, file_name: String) -> Self {
        let path = dir.join(file_name);
        Self {
            dir,
            path,
            file: None,
            unsynced: false,
        }
    }

    /// Appends `line` and a newline (buffered; durable only after [`Output::sync`]).
    async fn write_line(&mut self, line: &[u8]) -> Result<(), ConnectorError> {
        let file = self.file().await?;
        let written = async {
            file.write_all(line).await?;
            file.write_all(b"\n").await
        };
        written.await.map_err(|e| output_error(&self.path, &e))?;
        self.unsynced = true;
        Ok(())
    }

    /// The file, opened on first use.
    async fn file(&mut self) -> Result<&mut BufWriter<File>, ConnectorError> {
        match &mut self.file {
            Some(file) => Ok(file),
            file => {
                let opened = Self::open(&self.dir, &self.path)
                    .await
                    .map_err(|e| output_error(&self.path, &e))?;
                Ok(file.insert(opened))
            }
        }
    }

    /// Appends `bytes` (buffered; durable only after [`Output::sync`]).
    async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnectorError> {
        let file = self.file().await?;
        file.write_all(bytes)
            .await
            .map_err(|e| output_error(&self.path, &e))?;
        self.unsynced = true;
        Ok(())
    }

    async fn open(dir: &Path, path: &Path) -> io::Result<BufWriter<File>> {
        fs::create_dir_all(dir).await?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        // The file's directory entry must be durable too, or a crash can lose a file whose
        // contents were synced (and checkpointed past).
        #[cfg(unix)]
        File::open(dir).await?.sync_all().await?;
        // Each write of the buffer is handed to a blocking thread; a large one wakes it seldom.
        Ok(BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, file))
    }

    /// Makes everything written so far durable: call before checkpointing past it.
    async fn sync(&mut self) -> Result<(), ConnectorError> {
        if !self.unsynced {
            return Ok(());
        }
        if let Some(file) = &mut self.file {
            file.flush()
                .await
                .map_err(|e| output_error(&self.path, &e))?;
            file.get_mut()
                .sync_data()
                .await
                .map_err(|e| output_error(&self.path, &e))?;
        }
        self.unsynced = false;
        Ok(())
    }
}

/// A run's private directory for the files a program reads (its config, catalog and state);
/// removed when dropped.
struct RunFiles {
    dir: tempfile::TempDir,
}

impl RunFiles {
    /// A new directory named `<prefix><random>`, mode 0700.
    fn new(prefix: &str) -> Result<Self, ConnectorError> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|e| {
                ConnectorError::transient(format!(
                    "cannot create the run's temporary directory: {e}"
                ))
            })?;
        Ok(Self { dir })
    }

    /// Writes `value` as `name`, readable by this user only (it may hold secrets).
    fn write(&self, name: &str, value: &serde_json::Value) -> Result<PathBuf, ConnectorError> {
        use std::io::Write as _;
        let path = self.dir.path().join(name);
        let written = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path)?;
            serde_json::to_writer(&mut file, value)?;
            file.flush()
        })();
        written.map_err(|e| {
            ConnectorError::transient(format!("cannot write {}: {e}", path.display()))
        })?;
        Ok(path)
    }
}
