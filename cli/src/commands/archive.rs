//! `hakiri export` and `hakiri import`: a project's whole content as an archive (JSON Lines, the
//! format of `hakiri_core::archive`), to move it to another backend or keep it. An archive file
//! named `*.gz` is written gzip-compressed; one that starts with gzip's magic bytes is read
//! through gzip, whatever its name.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::bufread::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use hakiri_core::archive::{self, ArchiveReader, Summary};
use hakiri_core::{Catalog, Clock, SystemClock};
use serde::Serialize;

use super::Ctx;
use crate::cli::{ExportArgs, ImportArgs};
use crate::error::{CliError, CliResult};
use crate::output;
use crate::target::Access;

/// What `--output json` prints.
#[derive(Serialize)]
struct Report<'a> {
    project: &'a str,
    file: Option<&'a Path>,
    records: u64,
    events: u64,
    digest: &'a str,
    /// The digest the other side computed (`--verify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<&'a str>,
}

/// Progress on stderr, at most once a second: long exports and imports show they move.
struct Progress {
    verb: &'static str,
    every: Duration,
    last: Instant,
    quiet: bool,
}

impl Progress {
    fn new(verb: &'static str, quiet: bool) -> Self {
        Self::every(verb, quiet, Duration::from_secs(1))
    }

    fn every(verb: &'static str, quiet: bool, every: Duration) -> Self {
        Self {
            verb,
            every,
            last: Instant::now(),
            quiet,
        }
    }

    fn tick(&mut self, records: u64) {
        if let Some(line) = self.line(records) {
            output::note(line);
        }
    }

    /// The line to print after `records`, if one is due.
    fn line(&mut self, records: u64) -> Option<String> {
        if self.quiet || self.last.elapsed() < self.every {
            return None;
        }
        self.last = Instant::now();
        Some(format!("{}: {records} records…", self.verb))
    }
}

pub(super) async fn export(ctx: &Ctx, args: &ExportArgs) -> CliResult {
    let opened = ctx.open(Access::Existing).await?;
    let catalog = opened.catalog.as_ref();
    let mut progress = Progress::new("exporting", ctx.json());
    let now = SystemClock.now();
    let summary = match &args.file {
        Some(path) => {
            // Written beside the target and renamed at the end: a failed export leaves no
            // half-written archive under the name asked for.
            let partial = partial_path(path);
            let mut out = ArchiveFile::create(&partial, gzipped(path))?;
            let written = archive::export(catalog, &mut out, now, |n| {
                progress.tick(n);
            })
            .await
            .map_err(CliError::from)
            .and_then(|summary| {
                out.finish().map_err(|e| unwritable(&partial, &e))?;
                Ok(summary)
            });
            let summary = match written {
                Ok(summary) => summary,
                Err(error) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(error);
                }
            };
            std::fs::rename(&partial, path).map_err(|e| unwritable(path, &e))?;
            summary
        }
        None => {
            let stdout = BufWriter::with_capacity(1 << 16, io::stdout());
            archive::export(catalog, stdout, now, |n| progress.tick(n)).await?
        }
    };
    let verified = match (&args.file, args.verify) {
        (Some(path), true) => Some(read_archive(path, ctx.json())?.digest),
        _ => None,
    };
    if let Some(digest) = &verified {
        if *digest != summary.digest {
            return Err(CliError::failed(
                "digest_mismatch",
                format!(
                    "the archive written to {} reads back with digest {digest}, not {}",
                    args.file.as_deref().unwrap_or(Path::new("-")).display(),
                    summary.digest
                ),
            ));
        }
    }
    report(
        ctx,
        args.file.as_deref(),
        &summary,
        verified.as_deref(),
        "exported",
    );
    Ok(())
}

pub(super) async fn import(ctx: &Ctx, args: &ImportArgs) -> CliResult {
    // Read and check the whole archive before opening the catalog: a bad archive changes
    // nothing, and says which line is wrong.
    let summary = read_archive(&args.file, ctx.json())?;
    let opened = ctx.open(Access::CreateIfMissing).await?;
    let catalog = opened.catalog.as_ref();
    let head = catalog.archive_head().await?;
    if let Some(marker) = head
        .importing
        .as_ref()
        .filter(|m| m.archive == summary.digest)
    {
        output::note(format!(
            "resuming the import of this archive after record {} of {}",
            marker.applied, summary.records
        ));
    }
    let reader = open_archive(&args.file)?;
    let mut progress = Progress::new("importing", ctx.json());
    archive::import(catalog, reader, &summary, |n| progress.tick(n))
        .await
        .map_err(|e| match &e {
            hakiri_core::Error::FailedPrecondition(_) => CliError::from(e).hint(format!(
                "import into a project that does not exist yet (--project NEW), or into a new \
                 catalog; `hakiri --project {} pipelines list` shows what this one holds",
                ctx.project()
            )),
            _ => CliError::from(e),
        })?;
    let verified = if args.verify {
        Some(verify(catalog, &summary).await?)
    } else {
        None
    };
    report(
        ctx,
        Some(&args.file),
        &summary,
        verified.as_deref(),
        "imported",
    );
    Ok(())
}

/// The imported project's digest, computed through the catalog; an error unless it is the
/// archive's.
async fn verify(catalog: &dyn Catalog, archive: &Summary) -> CliResult<String> {
    let stored = archive::digest(catalog).await?;
    if stored.digest != archive.digest {
        return Err(CliError::failed(
            "digest_mismatch",
            format!(
                "the project's content has digest {} after the import, not the archive's {} \
                 ({} records and {} events read back, {} and {} in the archive)",
                stored.digest,
                archive.digest,
                stored.records,
                stored.events,
                archive.records,
                archive.events
            ),
        )
        .hint("someone may have written to the project meanwhile; export it and compare"));
    }
    Ok(stored.digest)
}

fn report(ctx: &Ctx, file: Option<&Path>, summary: &Summary, verified: Option<&str>, verb: &str) {
    let document = Report {
        project: ctx.project().as_str(),
        file,
        records: summary.records,
        events: summary.events,
        digest: &summary.digest,
        verified,
    };
    if ctx.json() {
        match file {
            Some(_) => output::json(&document),
            // Stdout carries the archive: the report must not be appended to it.
            None => output::note(serde_json::to_string(&document).unwrap_or_default()),
        }
        return;
    }
    let place = file.map_or_else(|| "stdout".to_owned(), |f| f.display().to_string());
    output::note(format!(
        "{verb} project {} ({place}): {} records, {} events",
        ctx.project(),
        summary.records,
        summary.events
    ));
    output::note(format!("digest {}", summary.digest));
    if let Some(digest) = verified {
        output::note(format!("verified: the other side's digest is {digest}"));
    }
}

/// Reads and checks a whole archive.
fn read_archive(path: &Path, quiet: bool) -> CliResult<Summary> {
    let mut reader = open_archive(path)?;
    let mut progress = Progress::new("checking the archive", quiet);
    while reader
        .next_record()
        .map_err(|e| bad_archive(path, e))?
        .is_some()
    {
        progress.tick(reader.line());
    }
    Ok(reader.summary())
}

/// The first bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether an archive written to `path` is compressed: its name ends in `.gz`.
fn gzipped(path: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "gz")
}

/// An archive being written to a file, compressed or not.
enum ArchiveFile {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

impl ArchiveFile {
    fn create(path: &Path, gzip: bool) -> CliResult<Self> {
        let file = BufWriter::with_capacity(
            1 << 16,
            File::create(path).map_err(|e| unwritable(path, &e))?,
        );
        Ok(if gzip {
            Self::Gzip(GzEncoder::new(file, Compression::default()))
        } else {
            Self::Plain(file)
        })
    }

    /// Ends the compressed stream, if any, and writes everything out.
    fn finish(self) -> io::Result<()> {
        let mut file = match self {
            Self::Plain(file) => file,
            Self::Gzip(encoder) => encoder.finish()?,
        };
        file.flush()
    }
}

impl Write for ArchiveFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(file) => file.write(bytes),
            Self::Gzip(encoder) => encoder.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(file) => file.flush(),
            Self::Gzip(encoder) => encoder.flush(),
        }
    }
}

/// Opens the archive at `path`, through gzip if it starts with gzip's magic bytes.
fn open_archive(path: &Path) -> CliResult<ArchiveReader<Box<dyn BufRead + Send>>> {
    let unreadable = |e: io::Error| {
        CliError::invalid(
            "unreadable_archive",
            format!("cannot read the archive {}: {e}", path.display()),
        )
    };
    let mut file = BufReader::with_capacity(1 << 16, File::open(path).map_err(unreadable)?);
    let input: Box<dyn BufRead + Send> = if file
        .fill_buf()
        .map_err(unreadable)?
        .starts_with(&GZIP_MAGIC)
    {
        Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(file)))
    } else {
        Box::new(file)
    };
    ArchiveReader::new(input).map_err(|e| bad_archive(path, e))
}

fn bad_archive(path: &Path, error: archive::ArchiveError) -> CliError {
    CliError::invalid("bad_archive", format!("{}: {error}", path.display()))
        .hint("nothing was imported; export the project again, or restore the archive from a copy")
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

fn unwritable(path: &Path, error: &io::Error) -> CliError {
    CliError::failed(
        "unwritable_archive",
        format!("cannot write the archive {}: {error}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_says_how_far_once_its_interval_has_passed_and_never_when_quiet() {
        let mut due = Progress::every("importing", false, Duration::ZERO);
        assert_eq!(due.line(7).as_deref(), Some("importing: 7 records…"));
        assert_eq!(due.line(9).as_deref(), Some("importing: 9 records…"));
        let mut waiting = Progress::every("importing", false, Duration::from_secs(3600));
        assert_eq!(waiting.line(7), None);
        let mut quiet = Progress::every("importing", true, Duration::ZERO);
        assert_eq!(quiet.line(7), None);
    }
}
