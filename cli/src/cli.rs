//! The command line: global options and every verb, as clap derive types.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// What `--help` shows after the options of the top-level command.
const AFTER_HELP: &str = "\
Catalog URLs (--catalog, or HAKIRI_CATALOG):
  sqlite://PATH/     a directory holding one <project>.db per project (default: sqlite://.hakiri/)
  sqlite://FILE.db   one SQLite file (it belongs to one project)
  postgres://…       a Postgres catalog (AWS RDS or any Postgres ≥ 13); run `hakiri migrate` once
  https://HOST       a catalog server: a deployed Hakiri Worker (Durable Objects), or `hakiri serve`
                     (http://HOST:PORT); needs --token or HAKIRI_TOKEN
  memory://          an in-memory catalog that lives only as long as this command

Exit codes:
  0  done
  1  the operation failed (the message says why and what to do next)
  2  bad usage or invalid input (a bad hakiri.toml, an unknown id…); nothing was changed
  3  the catalog could not be reached; retrying later may succeed

Start with `hakiri apply -f hakiri.toml`, then `hakiri plan` and `hakiri reconcile --once`.";

/// Operate a Hakiri catalog: declare pipelines, run the reconciler, and inspect or repair
/// cursors, runs, schemas and decisions.
#[derive(Debug, Parser)]
#[command(name = "hakiri", version, about, long_about = None, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every verb takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Where the catalog lives (see "Catalog URLs" in `hakiri --help`).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "HAKIRI_CATALOG",
        default_value = "sqlite://.hakiri/",
        value_name = "URL"
    )]
    pub(crate) catalog: String,

    /// The project: every pipeline, run and cursor belongs to exactly one.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "HAKIRI_PROJECT",
        default_value = "default",
        value_name = "NAME"
    )]
    pub(crate) project: String,

    /// Bearer token for a catalog server (an http:// or https:// catalog: `hakiri serve`, a
    /// deployed Worker).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "HAKIRI_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,

    /// Output format: human tables, or JSON for scripts (one document; `--follow` and the
    /// reconcile loop print one JSON object per line).
    #[arg(
        long,
        short = 'o',
        global = true,
        help_heading = "Global options",
        value_enum,
        default_value_t = OutputFormat::Table
    )]
    pub(crate) output: OutputFormat,

    /// The operator name recorded in the audit log for changes made by hand (default: $USER,
    /// else $LOGNAME, else the OS account name). An https:// catalog records the name of the
    /// token's grant instead.
    #[arg(
        long = "as",
        global = true,
        help_heading = "Global options",
        value_name = "NAME"
    )]
    pub(crate) operator: Option<String>,

    /// Log what happens to stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides).
    #[arg(short, long, global = true,
        help_heading = "Global options", action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned tables and short summaries, for people.
    Table,
    /// JSON on stdout, for scripts; errors are JSON on stderr.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create or update pipelines from a hakiri.toml: validates the whole file first, then
    /// writes each change with compare-and-set on the pipeline's generation.
    Apply(ApplyArgs),
    /// Dry run of the reconciler: what it would do with every pipeline now. Changes nothing.
    Plan,
    /// Run the reconciler: dispatch due pipelines to their connectors under writer leases.
    Reconcile(ReconcileArgs),
    /// List the connectors (built-in, and the Singer taps and Airbyte sources installed from a
    /// `pip_url`); install them ahead of their first run.
    #[command(subcommand)]
    Connectors(ConnectorsCommand),
    /// List, inspect, pause, resume or delete pipelines.
    #[command(subcommand)]
    Pipelines(PipelinesCommand),
    /// List and inspect runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Inspect cursors and their history; reset or roll them back (guarded and audited).
    #[command(subcommand)]
    Cursors(CursorsCommand),
    /// Inspect a stream's schema versions and diff two of them.
    #[command(subcommand)]
    Schemas(SchemasCommand),
    /// List schema-evolution decisions; accept or reject held ones.
    #[command(subcommand)]
    Decisions(DecisionsCommand),
    /// Show the project's audit log (every change: who, what, when).
    Events(EventsArgs),
    /// Serve the catalog over HTTP on this machine: every project of --catalog, behind a token
    /// printed at launch (the event log live, the plan, who you are).
    Serve(ServeArgs),
    /// Write the project's whole content — pipelines, runs, cursors with their history, schema
    /// versions, decisions and the event log — to an archive (JSON Lines), to move the project
    /// to another catalog with `hakiri import` or keep it. Changes nothing.
    Export(ExportArgs),
    /// Load an archive written by `hakiri export` into an empty project, keeping every id,
    /// version, epoch, sequence number and time. The archive is read and checked whole first;
    /// an interrupted import is finished by running the same import again.
    Import(ImportArgs),
    /// Bring the catalog's schema up to date (SQLite: opening it migrates it; Postgres: runs
    /// the migrations).
    Migrate,
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The file declaring the pipelines (`[[pipeline]]` tables).
    #[arg(short, long, value_name = "FILE", default_value = "hakiri.toml")]
    pub(crate) file: PathBuf,

    /// Also delete pipelines of the project that the file does not declare (with their runs,
    /// cursors and schemas). Needs --yes.
    #[arg(long)]
    pub(crate) prune: bool,

    /// Confirm the deletions --prune makes.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,

    /// Show what would change and write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Write the archive to FILE (created beside it as FILE.partial and renamed when complete)
    /// instead of stdout; gzip-compressed if FILE ends in `.gz`.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,

    /// Read the written archive back and check it against the digest computed while writing
    /// (needs --file). The digest is printed either way; `hakiri import --verify` prints the
    /// same one when the project arrives whole.
    #[arg(long, requires = "file")]
    pub(crate) verify: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The archive, as `hakiri export` wrote it; a gzip-compressed one is read as it is.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,

    /// After the import, compute the project's digest through the catalog and check that it is
    /// the archive's.
    #[arg(long)]
    pub(crate) verify: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0 picks a free one). Anything but loopback needs --grants.
    #[arg(long, default_value = "127.0.0.1:7464", value_name = "HOST:PORT")]
    pub(crate) listen: SocketAddr,

    /// The tokens this server accepts: a JSON list of grants, the format the Worker's
    /// HAKIRI_TOKENS secret has ({"name", "token" | "sha256", "projects", "role"}). Without it, a
    /// token made for this launch, printed at start, acts as you (admin on every project).
    #[arg(long, value_name = "FILE")]
    pub(crate) grants: Option<PathBuf>,

    /// Answer reads only: every write request is refused (403).
    #[arg(long)]
    pub(crate) read_only: bool,

    /// How long one protocol request may take before it is answered 504.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) request_timeout: Duration,

    /// Another `Host` header value to answer under (a name this machine has on loopback);
    /// repeatable. Requests naming any other host are refused.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) allow_host: Vec<String>,

    /// How many projects' catalogs stay open at once (on SQLite each holds its files and a
    /// writer thread); the one used longest ago is closed to open another, and reopened when
    /// asked for again. A memory catalog is never closed: it would lose its data.
    #[arg(long, default_value_t = NonZeroUsize::new(64).expect("non-zero"), value_name = "N")]
    pub(crate) max_open_projects: NonZeroUsize,
}

#[derive(Debug, Args)]
pub(crate) struct ReconcileArgs {
    /// Tick until nothing is due, letting each tick's runs finish, then exit. Exits 1 if a run
    /// failed.
    #[arg(long)]
    pub(crate) once: bool,

    /// With --once: stop after this many ticks even if work remains.
    #[arg(long, default_value_t = 100, value_name = "N", requires = "once")]
    pub(crate) max_ticks: usize,

    /// Time between ticks of the loop.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) interval: Duration,

    /// On SIGINT/SIGTERM: how long running runs may take to finish before they are cancelled
    /// (a second SIGINT cancels them at once).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) grace: Duration,

    /// Most runs at once in this process.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) max_concurrent: u16,

    /// Most runs at once of one connector, as CONNECTOR=N (repeatable).
    #[arg(long = "connector-limit", value_name = "CONNECTOR=N", value_parser = parse_connector_limit)]
    pub(crate) connector_limits: Vec<(String, usize)>,

    /// Writer-lease time-to-live; runs renew at a third of it. A process stalled longer than
    /// this is fenced.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) lease_ttl: Duration,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics while reconciling.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) metrics_addr: Option<SocketAddr>,

    /// The holder name written on leases and runs (default: hakiri@HOST:PID, unique per process).
    #[arg(long, value_name = "NAME")]
    pub(crate) holder: Option<String>,

    #[command(flatten)]
    pub(crate) venvs: VenvsArgs,
}

/// Where Singer taps and Airbyte sources named by a `pip_url` are installed.
#[derive(Debug, Args)]
pub(crate) struct VenvsArgs {
    /// The directory holding the taps' and sources' virtual environments, one per `pip_url`
    /// (default: DIR/venvs for a sqlite://DIR/ catalog, the SQLite file's directory/venvs for
    /// sqlite://FILE.db, .hakiri/venvs otherwise).
    #[arg(long = "venvs", env = "HAKIRI_VENVS", value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConnectorsCommand {
    /// List the built-in connectors and the taps and sources installed under the venvs
    /// directory (their pip_url and executables).
    List(VenvsArgs),
    /// Install the taps and sources of singer and airbyte pipelines that name a `pip_url`
    /// (pip's arguments, such as `-c constraints.txt`, may follow): one virtual environment per
    /// requirement, built with `python3 -m venv` and pip ($HAKIRI_PYTHON picks the
    /// interpreter). Idempotent: an installed requirement is left as it is. `reconcile` installs
    /// a missing one when its pipeline first runs; this does it ahead of time.
    Install(InstallArgs),
}

#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// Only these pipelines' taps or sources (default: every singer or airbyte pipeline with a
    /// pip_url).
    #[arg(value_name = "PIPELINE")]
    pub(crate) pipelines: Vec<String>,

    #[command(flatten)]
    pub(crate) venvs: VenvsArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PipelinesCommand {
    /// List the project's pipelines.
    List,
    /// Show one pipeline: spec, pause state, lease, last run, cursors, held decisions.
    Show {
        /// The pipeline id.
        pipeline: String,
    },
    /// Pause a pipeline: the reconciler stops dispatching it (a running run finishes).
    Pause {
        /// The pipeline id.
        pipeline: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Resume a paused pipeline (refused while schema decisions are held: decide them first).
    Resume {
        /// The pipeline id.
        pipeline: String,
    },
    /// Ask for a run now, outside the schedule: the reconciler dispatches it on its next tick
    /// (`hakiri reconcile --once` runs it at once). The request stays until such a run begins.
    Run {
        /// The pipeline id.
        pipeline: String,
        /// A backfill (a re-read of past data) rather than a manual run.
        #[arg(long)]
        backfill: bool,
    },
    /// Delete a pipeline with its runs, cursors, schemas and decisions (its events stay).
    Delete {
        /// The pipeline id.
        pipeline: String,
        /// Confirm the deletion.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// List runs, newest first.
    List(RunsListArgs),
    /// Show one run: status, stats per stream, cursors at start and end, error.
    Show {
        /// The run id (a UUID, as `runs list` prints it).
        run: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RunsListArgs {
    /// Only this pipeline's runs.
    #[arg(long, short = 'p')]
    pub(crate) pipeline: Option<String>,
    /// Only runs in this status.
    #[arg(long, value_enum)]
    pub(crate) status: Option<RunStatusArg>,
    /// Page size (1–1000).
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: u32,
    /// Only runs older than this run id (the `next` of the previous page).
    #[arg(long, value_name = "RUN")]
    pub(crate) before: Option<String>,
}

/// A run status, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RunStatusArg {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Abandoned,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CursorsCommand {
    /// List a pipeline's cursors (one per stream).
    List {
        /// The pipeline id.
        pipeline: String,
    },
    /// Show one stream's cursor.
    Show {
        /// The pipeline id.
        pipeline: String,
        /// The stream.
        stream: String,
    },
    /// Show a cursor's history, newest version first.
    History {
        /// The pipeline id.
        pipeline: String,
        /// The stream.
        stream: String,
        /// Page size (1–1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only versions below this one (the `next` of the previous page).
        #[arg(long, value_name = "VERSION")]
        before: Option<u64>,
    },
    /// Set a cursor to a value, or back to the start. Checks the request first (a refused one
    /// changes nothing), then takes the pipeline's writer lease; refused while a run holds it
    /// unless --force.
    Reset(ResetArgs),
    /// Set a cursor back to the value of an older version (a new, audited version). Checks the
    /// request first (a refused one changes nothing), then takes the pipeline's writer lease;
    /// refused while a run holds it unless --force.
    Rollback(RollbackArgs),
}

#[derive(Debug, Args)]
pub(crate) struct GuardArgs {
    /// Why (required; recorded in the audit log).
    #[arg(long)]
    pub(crate) reason: String,
    /// Take the lease even while a run holds it: the run is fenced (its writes fail and it
    /// stops). Only once the request has passed every check: a refused one fences nothing.
    #[arg(long)]
    pub(crate) force: bool,
    /// Only if the cursor is still at this version (compare-and-set).
    #[arg(long, value_name = "VERSION")]
    pub(crate) expect_version: Option<u64>,
    /// Let a monotonic cursor switch between number and string (refused otherwise: the
    /// connector would keep checkpointing the old type and every run would fail). Deploy a
    /// connector that checkpoints the new type first.
    #[arg(long)]
    pub(crate) allow_type_change: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["value", "initial"])))]
pub(crate) struct ResetArgs {
    /// The pipeline id.
    pub(crate) pipeline: String,
    /// The stream.
    pub(crate) stream: String,
    /// The new value, as JSON (`42`, `'"2026-01-01T00:00:00Z"'`, `'{"lsn": "0/16B3748"}'`).
    #[arg(long, value_name = "JSON")]
    pub(crate) value: Option<String>,
    /// Back to the start: the next run reads from the beginning.
    #[arg(long)]
    pub(crate) initial: bool,
    /// Create the cursor if the stream has none (refused otherwise, so that a mistyped stream
    /// name does not become a cursor nobody reads). With --value only.
    #[arg(long, conflicts_with = "initial")]
    pub(crate) create: bool,
    #[command(flatten)]
    pub(crate) guard: GuardArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The pipeline id.
    pub(crate) pipeline: String,
    /// The stream.
    pub(crate) stream: String,
    /// The version whose value to restore (see `hakiri cursors history`).
    #[arg(long, value_name = "VERSION")]
    pub(crate) to_version: u64,
    #[command(flatten)]
    pub(crate) guard: GuardArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SchemasCommand {
    /// List a stream's schema versions, oldest first.
    Versions {
        /// The pipeline id.
        pipeline: String,
        /// The stream.
        stream: String,
    },
    /// Show one schema version's columns (the current one by default).
    Show {
        /// The pipeline id.
        pipeline: String,
        /// The stream.
        stream: String,
        /// The version (default: current).
        #[arg(long)]
        version: Option<u32>,
    },
    /// What changed between two versions: added, removed, retyped columns, nullability, key,
    /// and the class of the change.
    Diff {
        /// The pipeline id.
        pipeline: String,
        /// The stream.
        stream: String,
        /// The older version (default: the one before --to).
        #[arg(long)]
        from: Option<u32>,
        /// The newer version (default: current).
        #[arg(long)]
        to: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DecisionsCommand {
    /// List schema-evolution decisions, oldest first.
    List {
        /// Only this pipeline's decisions.
        #[arg(long, short = 'p')]
        pipeline: Option<String>,
        /// Only decisions held for review.
        #[arg(long)]
        held: bool,
        /// Page size (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only decisions after this id (the `next` of the previous page).
        #[arg(long, value_name = "DECISION")]
        after: Option<String>,
    },
    /// Accept a held schema change: it becomes the stream's current version, and the pipeline
    /// resumes once no decision of it is held.
    Accept {
        /// The decision id.
        decision: String,
        /// Why (required; recorded on the decision).
        #[arg(long)]
        reason: String,
    },
    /// Reject a held schema change: the current version stays, and the pipeline resumes once no
    /// decision of it is held. Fix the source first: a run that meets the same change again has
    /// it judged again by the policy (held again, by default).
    Reject {
        /// The decision id.
        decision: String,
        /// Why (required; recorded on the decision).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Only events after this sequence number (default: the last --limit events).
    #[arg(long, value_name = "SEQ")]
    pub(crate) after: Option<u64>,
    /// The --limit events just before this sequence number, to page back: pass the first
    /// number shown as the next --before.
    #[arg(long, value_name = "SEQ", conflicts_with_all = ["after", "follow"])]
    pub(crate) before: Option<u64>,
    /// How many events (1–1000).
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: u32,
    /// Only this pipeline's events (a deleted pipeline's stay).
    #[arg(long, short = 'p')]
    pub(crate) pipeline: Option<String>,
    /// Keep printing new events as they happen, until interrupted. A catalog server
    /// (http:// or https://) pushes them; other catalogs are polled.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// With --follow on a file or database catalog: how often to poll it.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION", requires = "follow")]
    pub(crate) poll: Duration,
}

/// Parses `15s`, `1m30s`, `2h` (humantime).
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}; write a duration such as 500ms, 10s, 5m or 1h"))
}

fn parse_connector_limit(text: &str) -> Result<(String, usize), String> {
    let (name, n) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not CONNECTOR=N (e.g. jsonl=2)"))?;
    let n: usize = n
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("the limit in {text:?} must be a whole number ≥ 1"))?;
    Ok((name.to_owned(), n))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn connector_limits_and_durations_parse_with_clear_errors() {
        assert_eq!(parse_connector_limit("jsonl=2"), Ok(("jsonl".into(), 2)));
        assert!(parse_connector_limit("jsonl")
            .unwrap_err()
            .contains("CONNECTOR=N"));
        assert!(parse_connector_limit("jsonl=0")
            .unwrap_err()
            .contains("≥ 1"));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("soon").unwrap_err().contains("such as"));
    }
}
