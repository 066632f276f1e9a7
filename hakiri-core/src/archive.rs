//! Archives: a project's whole content as JSON Lines, to move it to another backend or keep it.
//!
//! # Format, version 1
//! One JSON object per line, tagged by `type`, in this order:
//! 1. `header`: the format version, the project it came from, when it was written, and the
//!    project's counters (the last lease epoch and decision id handed out, so that an imported
//!    project never repeats one, not even one of a deleted pipeline).
//! 2. For each pipeline, in id order: its `pipeline` record (with its lease), its `run`s newest
//!    first, then for each of its streams in name order that stream's `cursor_version`s newest
//!    first and `schema_version`s oldest first, then its `decision`s oldest first.
//! 3. Every `event` of the log, in sequence order (those of deleted pipelines too).
//! 4. `end`: how many records came before it and the digest of the content.
//!
//! The **digest** is SHA-256 over the counters and every record, each serialised canonically
//! (keys in a fixed order, no spaces) and ended by a newline. It covers content, not the header's
//! project name or time, so an export of any backend holding the same content has the same
//! digest; `hakiri export --verify` and `hakiri import --verify` print it for both sides.
//!
//! Records are read back by [`ArchiveReader`], which checks the order, the references and the
//! numbering above as it goes and names the line of the first problem; memory stays bounded by
//! one record, whatever the archive's size. Nothing in a project can be written by an import
//! unless the whole archive has been read and checked first (`hakiri import` reads it twice).
//!
//! An import is applied in batches through [`Catalog::import`](crate::Catalog::import), each
//! atomic; [`plan_import`] decides whether a batch may land. A project being imported carries an
//! [`ImportMarker`], so that an interrupted import is resumed by importing the same archive again
//! and refused for any other.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::audit::{Event, EventKind};
use crate::catalog::{Catalog, DecisionQuery};
use crate::cursor::CursorHistoryEntry;
use crate::error::{Entity, Error, Result};
use crate::evolution::{Decision, SchemaVersion};
use crate::ids::{DecisionId, PipelineId, ProjectId, RunId, StreamName};
use crate::lease::LeaseState;
use crate::page::Limit;
use crate::pipeline::Pipeline;
use crate::run::{Run, RunQuery, RunStatus};
use crate::time::Timestamp;

/// The archive format this build writes and the newest it reads.
pub const FORMAT: u32 = 1;

/// A project's counters: the last lease epoch and the last decision id handed out (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counters {
    /// The last lease epoch.
    pub epoch: u64,
    /// The last decision id.
    pub decision: u64,
}

/// An unfinished import: the archive's digest and how many of its records have landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportMarker {
    /// The digest of the archive being imported.
    pub archive: String,
    /// Records applied so far.
    pub applied: u64,
}

/// What an export or an import needs to know of a project before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveHead {
    /// The project's counters.
    pub counters: Counters,
    /// The sequence number of the newest event (0: none).
    pub last_event: u64,
    /// Whether the project has neither pipelines nor events.
    pub empty: bool,
    /// An import into the project that has not finished.
    pub importing: Option<ImportMarker>,
}

/// One line of an archive between its header and its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A pipeline and its lease.
    Pipeline {
        /// The pipeline.
        pipeline: Pipeline,
        /// Its lease state, if it was ever leased.
        lease: Option<LeaseState>,
    },
    /// A run.
    Run {
        /// The run.
        run: Run,
    },
    /// One version of a stream's cursor.
    CursorVersion {
        /// The pipeline.
        pipeline: PipelineId,
        /// The stream.
        stream: StreamName,
        /// The version.
        entry: CursorHistoryEntry,
    },
    /// One schema version of a stream.
    SchemaVersion {
        /// The version.
        version: SchemaVersion,
    },
    /// A schema-evolution decision.
    Decision {
        /// The decision.
        decision: Decision,
    },
    /// An event of the log.
    Event {
        /// The event.
        event: Event,
    },
}

impl Record {
    /// The record's `type`, as the archive names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Pipeline { .. } => "pipeline",
            Record::Run { .. } => "run",
            Record::CursorVersion { .. } => "cursor_version",
            Record::SchemaVersion { .. } => "schema_version",
            Record::Decision { .. } => "decision",
            Record::Event { .. } => "event",
        }
    }
}

/// The first line of an archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The format version ([`FORMAT`] for archives this build writes).
    pub format: u32,
    /// The project the archive was exported from.
    pub project: ProjectId,
    /// When (by the exporting machine's clock).
    pub exported_at: Timestamp,
    /// The project's counters.
    pub counters: Counters,
}

/// The last line of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// How many records came between the header and this line.
    pub records: u64,
    /// The digest of the content.
    pub digest: String,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum HeaderLine {
    Header(Header),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EndLine {
    End(End),
}

/// The digest of a project's content, fed the counters and then every record in archive order.
#[derive(Debug, Clone)]
pub struct ContentDigest(Sha256);

impl ContentDigest {
    /// A digest started with the project's counters.
    pub fn new(counters: Counters) -> Self {
        let mut digest = Self(Sha256::new());
        digest.line(&canonical(&counters));
        digest
    }

    /// Adds a record.
    pub fn add(&mut self, record: &Record) {
        self.line(&canonical(record));
    }

    fn line(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
        self.0.update(b"\n");
    }

    /// The digest: `sha256:` and 64 hex digits.
    pub fn finish(self) -> String {
        let bytes = self.0.finalize();
        let mut hex = String::with_capacity(7 + 64);
        hex.push_str("sha256:");
        for byte in bytes {
            hex.push_str(&format!("{byte:02x}"));
        }
        hex
    }
}

/// A value's JSON without spaces; struct fields in declaration order and object keys sorted (the
/// workspace's `serde_json` keeps no insertion order), so equal values give equal bytes.
fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("archive values serialise to JSON")
}

/// What an archive held, or what was written to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Its header.
    pub counters: Counters,
    /// Records between header and end.
    pub records: u64,
    /// Events among them.
    pub events: u64,
    /// The content digest.
    pub digest: String,
}

/// Writes an archive to `out`, hashing as it goes.
#[derive(Debug)]
pub struct ArchiveWriter<W: Write> {
    out: W,
    digest: ContentDigest,
    counters: Counters,
    records: u64,
    events: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// Writes the header.
    ///
    /// # Errors
    /// Writing to `out`.
    pub fn new(mut out: W, header: Header) -> io::Result<Self> {
        let counters = header.counters;
        write_line(&mut out, &HeaderLine::Header(header))?;
        Ok(Self {
            out,
            digest: ContentDigest::new(counters),
            counters,
            records: 0,
            events: 0,
        })
    }

    /// Writes a record.
    ///
    /// # Errors
    /// Writing to `out`.
    pub fn record(&mut self, record: &Record) -> io::Result<()> {
        let line = canonical(record);
        self.out.write_all(&line)?;
        self.out.write_all(b"\n")?;
        self.digest.line(&line);
        self.records += 1;
        if matches!(record, Record::Event { .. }) {
            self.events += 1;
        }
        Ok(())
    }

    /// How many records have been written.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Writes the end line and flushes.
    ///
    /// # Errors
    /// Writing to `out`.
    pub fn finish(mut self) -> io::Result<(W, Summary)> {
        let digest = self.digest.finish();
        let end = End {
            records: self.records,
            digest: digest.clone(),
        };
        write_line(&mut self.out, &EndLine::End(end))?;
        self.out.flush()?;
        let summary = Summary {
            counters: self.counters,
            records: self.records,
            events: self.events,
            digest,
        };
        Ok((self.out, summary))
    }
}

fn write_line<T: Serialize>(out: &mut impl Write, value: &T) -> io::Result<()> {
    out.write_all(&canonical(value))?;
    out.write_all(b"\n")
}

/// Why an archive cannot be read: the line and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("archive line {line}: {problem}")]
pub struct ArchiveError {
    /// The line (1 is the header).
    pub line: u64,
    /// What is wrong with it.
    pub problem: String,
}

impl From<ArchiveError> for Error {
    fn from(error: ArchiveError) -> Self {
        Error::InvalidArgument(error.to_string())
    }
}

/// Reads an archive record by record, checking as it goes that it is complete, in order and
/// consistent; memory does not grow with the archive.
#[derive(Debug)]
pub struct ArchiveReader<R: BufRead> {
    input: R,
    buffer: String,
    header: Header,
    check: Check,
    end: Option<End>,
}

impl<R: BufRead> ArchiveReader<R> {
    /// Reads and checks the header.
    ///
    /// # Errors
    /// An [`ArchiveError`] on line 1: not an archive, or a format newer than [`FORMAT`].
    pub fn new(mut input: R) -> std::result::Result<Self, ArchiveError> {
        let mut buffer = String::new();
        let at = |problem: String| ArchiveError { line: 1, problem };
        let read = input
            .read_line(&mut buffer)
            .map_err(|e| at(format!("cannot be read: {e}")))?;
        if read == 0 {
            return Err(at("the archive is empty".into()));
        }
        let value: serde_json::Value = serde_json::from_str(&buffer).map_err(|e| {
            at(format!(
                "not a Hakiri archive (the first line is not JSON: {e})"
            ))
        })?;
        if value.get("type").and_then(|t| t.as_str()) != Some("header") {
            return Err(at(
                "not a Hakiri archive (the first line is not its header)".into(),
            ));
        }
        match value.get("format").and_then(serde_json::Value::as_u64) {
            Some(format) if format > u64::from(FORMAT) => {
                return Err(at(format!(
                    "the archive is of format {format}, newer than this hakiri reads ({FORMAT}); \
                     import it with a newer hakiri"
                )))
            }
            Some(_) => {}
            None => return Err(at("the header has no format version".into())),
        }
        let HeaderLine::Header(header) = serde_json::from_value(value)
            .map_err(|e| at(format!("the header is malformed: {e}")))?;
        let check = Check::new(header.counters);
        Ok(Self {
            input,
            buffer,
            header,
            check,
            end: None,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The number of the line read last.
    pub fn line(&self) -> u64 {
        self.check.line
    }

    /// The next record, or `None` after the end line (which must be the last line, and must
    /// agree with what came before it).
    ///
    /// # Errors
    /// An [`ArchiveError`] naming the line: unreadable, malformed, out of order, inconsistent,
    /// truncated (no end line), or a digest or count that does not match.
    pub fn next_record(&mut self) -> std::result::Result<Option<Record>, ArchiveError> {
        if self.end.is_some() {
            return Ok(None);
        }
        self.buffer.clear();
        let line = self.check.line + 1;
        let at = |problem: String| ArchiveError { line, problem };
        let read = self
            .input
            .read_line(&mut self.buffer)
            .map_err(|e| at(format!("cannot be read: {e}")))?;
        if read == 0 || !self.buffer.ends_with('\n') {
            return Err(at(format!(
                "the archive ends without its end line after {} records: it is truncated",
                self.check.records
            )));
        }
        self.check.line = line;
        match serde_json::from_str::<Record>(&self.buffer) {
            Ok(record) => {
                self.check.record(&record).map_err(at)?;
                Ok(Some(record))
            }
            Err(record_error) => {
                let Ok(EndLine::End(end)) = serde_json::from_str(&self.buffer) else {
                    return Err(at(format!("not a valid record: {record_error}")));
                };
                self.check.end(&end).map_err(at)?;
                let mut rest = String::new();
                let more = self
                    .input
                    .read_line(&mut rest)
                    .map_err(|e| at(format!("cannot be read: {e}")))?;
                if more > 0 {
                    return Err(ArchiveError {
                        line: line + 1,
                        problem: "the archive goes on after its end line".into(),
                    });
                }
                self.end = Some(end);
                Ok(None)
            }
        }
    }

    /// Reads the rest of the archive, checking it, and says what it held.
    ///
    /// # Errors
    /// As [`ArchiveReader::next_record`].
    pub fn summarize(mut self) -> std::result::Result<Summary, ArchiveError> {
        while self.next_record()?.is_some() {}
        Ok(self.summary())
    }

    /// What the archive held, once read to its end (before that, what was read so far).
    pub fn summary(&self) -> Summary {
        Summary {
            counters: self.header.counters,
            records: self.check.records,
            events: self.check.events,
            digest: self
                .end
                .as_ref()
                .map_or_else(|| self.check.digest.clone().finish(), |e| e.digest.clone()),
        }
    }
}

/// Where the archive is, for checking that records come in their documented order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Section {
    Start,
    Runs(Option<RunId>),
    Cursors { stream: StreamName, version: u64 },
    Schemas { stream: StreamName, version: u32 },
    Decisions(Option<DecisionId>),
    Events,
}

/// The order and numbering rules an archive keeps; one record at a time.
#[derive(Debug, Clone)]
struct Check {
    counters: Counters,
    digest: ContentDigest,
    line: u64,
    records: u64,
    events: u64,
    pipeline: Option<PipelineId>,
    running: bool,
    /// The last stream of the current pipeline that had versions.
    stream: Option<StreamName>,
    section: Section,
    last_event: u64,
}

impl Check {
    fn new(counters: Counters) -> Self {
        Self {
            counters,
            digest: ContentDigest::new(counters),
            line: 1,
            records: 0,
            events: 0,
            pipeline: None,
            running: false,
            stream: None,
            section: Section::Start,
            last_event: 0,
        }
    }

    fn record(&mut self, record: &Record) -> std::result::Result<(), String> {
        self.order(record)?;
        self.digest.add(record);
        self.records += 1;
        Ok(())
    }

    fn end(&mut self, end: &End) -> std::result::Result<(), String> {
        self.close_stream()?;
        if end.records != self.records {
            return Err(format!(
                "the end line counts {} records, but {} came before it",
                end.records, self.records
            ));
        }
        let digest = self.digest.clone().finish();
        if end.digest != digest {
            return Err(format!(
                "the content's digest is {digest}, not {} as the end line says: the archive was \
                 changed or damaged",
                end.digest
            ));
        }
        Ok(())
    }

    /// The pipeline a record of the current pipeline names must be that pipeline.
    fn owned(&self, kind: &str, pipeline: &PipelineId) -> std::result::Result<(), String> {
        match &self.pipeline {
            Some(current) if current == pipeline => Ok(()),
            _ if self.section == Section::Events => Err(format!(
                "a {kind} record after the events; every pipeline's records come before them"
            )),
            Some(current) => Err(format!(
                "a {kind} record of pipeline {pipeline} among the records of pipeline {current}"
            )),
            None => Err(format!(
                "a {kind} record of pipeline {pipeline} before any pipeline record"
            )),
        }
    }

    /// A stream's cursor versions must end at version 1 before anything else follows them.
    fn close_stream(&self) -> std::result::Result<(), String> {
        match &self.section {
            Section::Cursors { stream, version } if *version != 1 => Err(format!(
                "stream {stream}'s cursor versions stop at {version}; they go down to 1"
            )),
            _ => Ok(()),
        }
    }

    fn epoch(&self, what: &str, epoch: u64) -> std::result::Result<(), String> {
        if epoch > self.counters.epoch {
            return Err(format!(
                "{what} has epoch {epoch}, above the header's last epoch {}",
                self.counters.epoch
            ));
        }
        Ok(())
    }

    /// A new stream section must name a stream after the last one (or the same one, going from
    /// its cursor versions to its schema versions).
    fn next_stream(&self, stream: &StreamName, schemas: bool) -> std::result::Result<(), String> {
        match (&self.stream, &self.section) {
            (Some(last), Section::Cursors { .. }) if schemas && last == stream => Ok(()),
            (Some(last), _) if last >= stream => Err(format!(
                "stream {stream} comes after stream {last}; streams are in name order"
            )),
            _ => Ok(()),
        }
    }

    fn order(&mut self, record: &Record) -> std::result::Result<(), String> {
        match record {
            Record::Pipeline { pipeline, lease } => {
                if self.section == Section::Events {
                    return Err("a pipeline record after the events".into());
                }
                self.close_stream()?;
                let id = pipeline.id();
                if let Some(last) = &self.pipeline {
                    if last >= id {
                        return Err(format!(
                            "pipeline {id} comes after pipeline {last}; pipelines are in id order"
                        ));
                    }
                }
                if let Some(lease) = lease {
                    self.epoch("its lease", lease.epoch.get())?;
                }
                self.pipeline = Some(id.clone());
                self.running = false;
                self.stream = None;
                self.section = Section::Runs(None);
            }
            Record::Run { run } => {
                self.owned("run", &run.pipeline)?;
                let Section::Runs(last) = &self.section else {
                    return Err(format!(
                        "run {} after the pipeline's streams or decisions; runs come first",
                        run.id
                    ));
                };
                if last.is_some_and(|last| last <= run.id) {
                    return Err(format!(
                        "run {} is not older than the run before it; runs are newest first",
                        run.id
                    ));
                }
                self.epoch(&format!("run {}", run.id), run.epoch.get())?;
                if run.status == RunStatus::Running {
                    if self.running {
                        return Err(format!(
                            "run {} is a second running run of pipeline {}",
                            run.id, run.pipeline
                        ));
                    }
                    self.running = true;
                }
                self.section = Section::Runs(Some(run.id));
            }
            Record::CursorVersion {
                pipeline,
                stream,
                entry,
            } => {
                self.owned("cursor_version", pipeline)?;
                match &self.section {
                    Section::Cursors {
                        stream: current,
                        version,
                    } if current == stream => {
                        if entry.version.checked_add(1) != Some(*version) {
                            return Err(format!(
                                "cursor {pipeline}/{stream} version {} follows version {version}; \
                                 versions go down one by one",
                                entry.version
                            ));
                        }
                    }
                    Section::Decisions(_) => {
                        return Err("a cursor version after the pipeline's decisions".into())
                    }
                    _ => {
                        self.close_stream()?;
                        self.next_stream(stream, false)?;
                        if entry.version == 0 {
                            return Err(format!(
                                "cursor {pipeline}/{stream} has version 0; versions start at 1"
                            ));
                        }
                    }
                }
                if let Some(epoch) = entry.epoch {
                    self.epoch(&format!("cursor {pipeline}/{stream}"), epoch.get())?;
                }
                self.stream = Some(stream.clone());
                self.section = Section::Cursors {
                    stream: stream.clone(),
                    version: entry.version,
                };
            }
            Record::SchemaVersion { version } => {
                self.owned("schema_version", &version.pipeline)?;
                let stream = &version.stream;
                let expected = match &self.section {
                    Section::Schemas {
                        stream: current,
                        version,
                    } if current == stream => version + 1,
                    Section::Decisions(_) => {
                        return Err("a schema version after the pipeline's decisions".into())
                    }
                    _ => {
                        self.close_stream()?;
                        self.next_stream(stream, true)?;
                        1
                    }
                };
                if version.version != expected {
                    return Err(format!(
                        "schema {}/{stream} version {} where version {expected} comes next",
                        version.pipeline, version.version
                    ));
                }
                self.stream = Some(stream.clone());
                self.section = Section::Schemas {
                    stream: stream.clone(),
                    version: version.version,
                };
            }
            Record::Decision { decision } => {
                self.owned("decision", &decision.pipeline)?;
                self.close_stream()?;
                let last = match &self.section {
                    Section::Decisions(last) => *last,
                    _ => None,
                };
                if last.is_some_and(|last| last >= decision.id) {
                    return Err(format!(
                        "decision {} comes after decision {}; decisions are oldest first",
                        decision.id,
                        last.map_or(0, DecisionId::get)
                    ));
                }
                if decision.id.get() > self.counters.decision {
                    return Err(format!(
                        "decision {} is above the header's last decision id {}",
                        decision.id, self.counters.decision
                    ));
                }
                self.section = Section::Decisions(Some(decision.id));
            }
            Record::Event { event } => {
                self.close_stream()?;
                if event.seq != self.last_event + 1 {
                    return Err(format!(
                        "event {} follows event {}; events are numbered without gaps",
                        event.seq, self.last_event
                    ));
                }
                self.last_event = event.seq;
                self.events += 1;
                self.pipeline = None;
                self.section = Section::Events;
            }
        }
        Ok(())
    }
}

/// Reads `catalog`'s whole content in archive order, handing each record to `each`; memory stays
/// bounded by one page. `head` is the project's [`ArchiveHead`], read before: the walk fails if
/// an import into the project is unfinished, or if the project changed while it was read (new
/// events past `head.last_event`), since the archive would then not be one state of it.
///
/// # Errors
/// The catalog's errors, `each`'s, and [`Error::FailedPrecondition`] for the two cases above.
pub async fn walk<C, F>(catalog: &C, head: &ArchiveHead, mut each: F) -> Result<()>
where
    C: Catalog + ?Sized,
    F: FnMut(Record) -> Result<()> + Send,
{
    if let Some(marker) = &head.importing {
        return Err(Error::precondition(format!(
            "project {} is being imported ({} records of archive {} so far); finish the import \
             before exporting it",
            catalog.project(),
            marker.applied,
            marker.archive
        )));
    }
    let mut after: Option<PipelineId> = None;
    loop {
        let page = catalog
            .pipeline_statuses(after.as_ref(), Limit::MAX)
            .await?;
        for status in page.items {
            let id = status.pipeline.id().clone();
            each(Record::Pipeline {
                pipeline: status.pipeline,
                lease: status.lease,
            })?;
            walk_pipeline(catalog, &id, &mut each).await?;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut seq = 0;
    loop {
        let events = catalog.events(seq, Limit::MAX).await?;
        let Some(last) = events.last() else { break };
        seq = last.seq;
        for event in events {
            if event.seq > head.last_event {
                return Err(changed(catalog.project()));
            }
            each(Record::Event { event })?;
        }
    }
    if seq != head.last_event {
        return Err(changed(catalog.project()));
    }
    Ok(())
}

fn changed(project: &ProjectId) -> Error {
    Error::precondition(format!(
        "project {project} changed while it was exported; stop its writers (or pause its \
         pipelines) and export again"
    ))
}

async fn walk_pipeline<C, F>(catalog: &C, pipeline: &PipelineId, each: &mut F) -> Result<()>
where
    C: Catalog + ?Sized,
    F: FnMut(Record) -> Result<()> + Send,
{
    let mut query = RunQuery::all().pipeline(pipeline.clone());
    query.limit = Limit::MAX;
    loop {
        let page = catalog.list_runs(&query).await?;
        for run in page.items {
            each(Record::Run { run })?;
        }
        match page.next {
            Some(next) => query = query.before(next),
            None => break,
        }
    }
    for stream in catalog.list_streams(pipeline).await? {
        let mut before = None;
        loop {
            let page = catalog
                .cursor_history(pipeline, &stream, before, Limit::MAX)
                .await?;
            for entry in page.items {
                each(Record::CursorVersion {
                    pipeline: pipeline.clone(),
                    stream: stream.clone(),
                    entry,
                })?;
            }
            match page.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        for version in catalog.list_schema_versions(pipeline, &stream).await? {
            each(Record::SchemaVersion { version })?;
        }
    }
    let mut query = DecisionQuery {
        pipeline: Some(pipeline.clone()),
        held_only: false,
        after: None,
        limit: Limit::MAX,
    };
    loop {
        let page = catalog.list_decisions(&query).await?;
        for decision in page.items {
            each(Record::Decision { decision })?;
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    Ok(())
}

/// The digest of `catalog`'s content, as an export of it now would carry.
///
/// # Errors
/// As [`walk`].
pub async fn digest<C: Catalog + ?Sized>(catalog: &C) -> Result<Summary> {
    let head = catalog.archive_head().await?;
    let mut digest = ContentDigest::new(head.counters);
    let (mut records, mut events) = (0, 0);
    walk(catalog, &head, |record| {
        digest.add(&record);
        records += 1;
        events += u64::from(matches!(record, Record::Event { .. }));
        Ok(())
    })
    .await?;
    Ok(Summary {
        counters: head.counters,
        records,
        events,
        digest: digest.finish(),
    })
}

/// Writes an archive of `catalog` to `out`; `progress` hears the number of records written so
/// far, after each one.
///
/// # Errors
/// As [`walk`]; [`Error::Backend`] if `out` cannot be written.
pub async fn export<C, W, P>(
    catalog: &C,
    out: W,
    exported_at: Timestamp,
    mut progress: P,
) -> Result<Summary>
where
    C: Catalog + ?Sized,
    W: Write + Send,
    P: FnMut(u64) + Send,
{
    let head = catalog.archive_head().await?;
    let header = Header {
        format: FORMAT,
        project: catalog.project().clone(),
        exported_at,
        counters: head.counters,
    };
    let mut writer = ArchiveWriter::new(out, header).map_err(unwritable)?;
    walk(catalog, &head, |record| {
        writer.record(&record).map_err(unwritable)?;
        progress(writer.records());
        Ok(())
    })
    .await?;
    let (_, summary) = writer.finish().map_err(unwritable)?;
    Ok(summary)
}

fn unwritable(error: io::Error) -> Error {
    Error::Backend(format!("the archive cannot be written: {error}"))
}

/// The most records [`import`] sends in one batch.
pub const BATCH_RECORDS: usize = 1000;
/// The most bytes of archive lines [`import`] sends in one batch (a batch may pass it by one
/// record).
pub const BATCH_BYTES: usize = 1 << 20;

/// Imports the archive `reader` reads into `catalog`'s project, in batches; `archive` is what
/// [`ArchiveReader::summarize`] found in the same archive, read before (so that nothing is written
/// unless all of it is sound). Resumes an import of the same archive that stopped; `progress`
/// hears the number of records applied so far, after each batch.
///
/// # Errors
/// An [`ArchiveError`] (as `InvalidArgument`) if the archive differs from what was summarised;
/// the catalog's errors, among them `FailedPrecondition` for a project that is not empty
/// ([`plan_import`]).
pub async fn import<C, R, P>(
    catalog: &C,
    mut reader: ArchiveReader<R>,
    archive: &Summary,
    mut progress: P,
) -> Result<ImportProgress>
where
    C: Catalog + ?Sized,
    R: BufRead + Send,
    P: FnMut(u64) + Send,
{
    let head = catalog.archive_head().await?;
    let position = match &head.importing {
        Some(marker) if marker.archive == archive.digest => marker.applied,
        _ => 0,
    };
    for _ in 0..position {
        if reader.next_record()?.is_none() {
            break;
        }
    }
    let mut batch = ImportBatch {
        archive: archive.digest.clone(),
        counters: archive.counters,
        position,
        records: Vec::new(),
        last: false,
    };
    let mut bytes = 0;
    loop {
        let record = reader.next_record()?;
        batch.last = record.is_none();
        if batch.last && reader.summary().digest != archive.digest {
            return Err(Error::invalid(format!(
                "the archive changed since it was checked (its digest was {}, now {}); the \
                 import stopped after {} records",
                archive.digest,
                reader.summary().digest,
                batch.position
            )));
        }
        if let Some(record) = record {
            bytes += reader.buffer.len();
            batch.records.push(record);
            if batch.records.len() < BATCH_RECORDS && bytes < BATCH_BYTES {
                continue;
            }
        }
        let sent = batch.records.len() as u64;
        let next = ImportBatch {
            position: batch.position + sent,
            records: Vec::with_capacity(batch.records.len()),
            ..batch.clone_head()
        };
        let done = catalog.import(std::mem::replace(&mut batch, next)).await?;
        progress(done.applied);
        if done.done {
            return Ok(done);
        }
        bytes = 0;
    }
}

impl ImportBatch {
    /// This batch's archive and counters, without records.
    fn clone_head(&self) -> Self {
        Self {
            archive: self.archive.clone(),
            counters: self.counters,
            position: self.position,
            records: Vec::new(),
            last: false,
        }
    }
}

/// A batch of an archive's records for [`Catalog::import`](crate::Catalog::import).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportBatch {
    /// The archive's digest: which archive this batch belongs to.
    pub archive: String,
    /// The archive's counters; applied with every batch.
    pub counters: Counters,
    /// How many of the archive's records come before this batch.
    pub position: u64,
    /// The records, in archive order.
    pub records: Vec<Record>,
    /// Whether this is the archive's last batch: the import ends with it.
    pub last: bool,
}

/// What an import has done after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportProgress {
    /// Records applied so far.
    pub applied: u64,
    /// Whether the import is finished.
    pub done: bool,
}

/// The error for an archive that lists a version of a cursor but no event recording it. A backend
/// that keeps each version in the event that records it (ADR 0038) finds this when the import
/// ends.
pub fn version_without_event(pipeline: &str, stream: &str, version: u64) -> Error {
    Error::invalid(format!(
        "the archive holds version {version} of pipeline {pipeline}'s cursor for stream {stream} \
         but no event recording it; an archive written by `hakiri export` has both"
    ))
}

/// The cursor versions a log records for each pipeline's current incarnation: those of the cursor
/// events after the pipeline's last `pipeline_deleted` (a pipeline deleted and created again
/// starts its versions at 1, and the old incarnation's events stay in the log). In an archive,
/// every cursor version must be among them; [`version_without_event`] is the error otherwise.
pub fn recorded_versions<'a>(
    log: impl IntoIterator<Item = &'a Event>,
) -> BTreeMap<&'a PipelineId, BTreeSet<(&'a StreamName, u64)>> {
    let mut recorded: BTreeMap<_, BTreeSet<_>> = BTreeMap::new();
    for event in log {
        if event.kind == EventKind::PipelineDeleted {
            recorded.remove(&event.pipeline);
        } else if let Some(version) = event.kind.cursor_version() {
            recorded.entry(&event.pipeline).or_default().insert(version);
        }
    }
    recorded
}

/// Decides whether `batch` may be applied to a project, given its head (whether it is empty, its
/// last event, its unfinished import, if any); returns the marker to store with the batch
/// (`None`: the import is finished, remove it).
///
/// # Errors
/// [`Error::FailedPrecondition`]: the project holds data and no import of this archive is
/// unfinished in it; an import of another archive is unfinished; or the batch does not start
/// where the import stopped. [`Error::InvalidArgument`]: an empty batch that is not the last, or
/// events that do not continue the project's log one after another.
/// [`Error::AlreadyExists`]: a key repeated inside the batch.
pub fn plan_import(head: &ArchiveHead, batch: &ImportBatch) -> Result<Option<ImportMarker>> {
    match head.importing.as_ref() {
        Some(marker) if marker.archive != batch.archive => {
            return Err(Error::precondition(format!(
                "an import of another archive ({}) stopped in this project after {} records; \
                 import that archive again to finish it, or import into another project",
                marker.archive, marker.applied
            )))
        }
        Some(marker) if marker.applied != batch.position => {
            return Err(Error::precondition(format!(
                "this archive's import stopped after {} records; the batch starts at record {}",
                marker.applied, batch.position
            )))
        }
        Some(_) => {}
        None if !head.empty => {
            return Err(Error::precondition(
                "the project already holds pipelines or events; an archive is imported only \
                 into an empty project",
            ))
        }
        None if batch.position != 0 => {
            return Err(Error::precondition(format!(
                "no import is under way in this project; an archive is imported from its first \
                 record, not record {}",
                batch.position
            )))
        }
        None => {}
    }
    if batch.records.is_empty() && !batch.last {
        return Err(Error::invalid(
            "an import batch without records must be the last",
        ));
    }
    check_batch(&batch.records, head.last_event)?;
    let applied = batch.position + batch.records.len() as u64;
    Ok((!batch.last).then(|| ImportMarker {
        archive: batch.archive.clone(),
        applied,
    }))
}

/// A batch repeats no key among its records, and numbers its events one after another from the
/// project's `last_event`; what else it holds against the stored project (a taken key, a missing
/// pipeline) is the backend's to check while it writes.
fn check_batch(records: &[Record], mut last_event: u64) -> Result<()> {
    let (mut pipelines, mut runs, mut decisions) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for record in records {
        let taken = match record {
            Record::Pipeline { pipeline, .. } => {
                (!pipelines.insert(pipeline.id())).then(|| Entity::Pipeline {
                    pipeline: pipeline.id().clone(),
                })
            }
            Record::Run { run } => (!runs.insert(run.id)).then_some(Entity::Run { run: run.id }),
            Record::Decision { decision } => {
                (!decisions.insert(decision.id)).then_some(Entity::Decision {
                    decision: decision.id,
                })
            }
            Record::Event { event } => {
                if Some(event.seq) != last_event.checked_add(1) {
                    return Err(Error::invalid(format!(
                        "event {} where event {} comes next",
                        event.seq,
                        last_event.saturating_add(1)
                    )));
                }
                last_event = event.seq;
                None
            }
            Record::CursorVersion { .. } | Record::SchemaVersion { .. } => None,
        };
        if let Some(entity) = taken {
            return Err(Error::AlreadyExists(entity));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
