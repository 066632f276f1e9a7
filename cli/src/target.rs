//! Catalog URLs: parsing `--catalog` and opening the backend it names.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_catalog_memory::MemoryCatalog;
use hakiri_core::{Catalog, ProjectId};
use hakiri_protocol::{HttpCatalog, HttpConfig};

use crate::error::{CliError, CliResult};
use crate::output;

/// Where a catalog lives, parsed from `--catalog`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CatalogUrl {
    /// A directory of SQLite files, one `<project>.db` per project.
    SqliteDir(PathBuf),
    /// One SQLite file.
    SqliteFile(PathBuf),
    /// A Postgres server.
    Postgres(String),
    /// A catalog server speaking the protocol over HTTP(S): `hakiri serve` or a deployed Worker.
    Http(String),
    /// In memory, for this command only.
    Memory,
}

impl CatalogUrl {
    /// Parses a catalog URL.
    ///
    /// # Errors
    /// An invalid-input error listing the accepted forms.
    pub(crate) fn parse(url: &str) -> CliResult<Self> {
        let accepted = "use sqlite://DIR/, sqlite://FILE.db, postgres://…, https://… or memory://";
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(CliError::invalid(
                    "bad_catalog_url",
                    "catalog URL sqlite:// names no path",
                )
                .hint("write sqlite://.hakiri/ for a directory of per-project files, or sqlite://path/to/file.db"));
            }
            let path_buf = PathBuf::from(path);
            let is_dir = path.ends_with('/') || path_buf.is_dir();
            return Ok(if is_dir {
                CatalogUrl::SqliteDir(path_buf)
            } else {
                CatalogUrl::SqliteFile(path_buf)
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(CatalogUrl::Postgres(url.to_owned()));
        }
        if url.starts_with("https://") || url.starts_with("http://") {
            return Ok(CatalogUrl::Http(url.to_owned()));
        }
        if url == "memory://" || url == "memory:" {
            return Ok(CatalogUrl::Memory);
        }
        Err(CliError::invalid(
            "bad_catalog_url",
            format!("catalog URL {url:?} is not one hakiri knows"),
        )
        .hint(accepted))
    }
}

impl fmt::Display for CatalogUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogUrl::SqliteDir(dir) => write!(f, "sqlite://{}", dir.display()),
            CatalogUrl::SqliteFile(file) => write!(f, "sqlite://{}", file.display()),
            CatalogUrl::Postgres(url) => f.write_str(&redact(url)),
            CatalogUrl::Http(url) => f.write_str(url),
            CatalogUrl::Memory => f.write_str("memory://"),
        }
    }
}

/// A URL with its password — in the user info or as a `password` query parameter, as libpq
/// takes it — replaced by `***`, for messages. A URL that does not parse is not shown at all.
fn redact(raw: &str) -> String {
    const HIDDEN: &str = "***";
    let Ok(mut url) = url::Url::parse(raw) else {
        return "(a catalog URL that does not parse)".to_owned();
    };
    if url.password().is_some() {
        // Only URLs that cannot have a password refuse one.
        let _ = url.set_password(Some(HIDDEN));
    }
    if url.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" {
                    HIDDEN.into()
                } else {
                    value
                };
                (key.into_owned(), value.into_owned())
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// Whether opening may create the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Create it if it does not exist (`apply`, `migrate`).
    CreateIfMissing,
    /// It must exist already: a typo in `--project` must not silently create an empty catalog.
    Existing,
}

/// An open catalog and where it is.
pub(crate) struct Opened {
    pub(crate) catalog: Arc<dyn Catalog>,
    pub(crate) url: CatalogUrl,
    /// The SQLite file, for messages.
    pub(crate) file: Option<PathBuf>,
    /// The catalog server, when the catalog is one (`catalog` is this): it pushes its events.
    pub(crate) server: Option<Arc<HttpCatalog>>,
}

/// Opens the catalog of `project` at `url`.
///
/// # Errors
/// Invalid input for a bad URL or a missing catalog (with `Access::Existing`); the catalog's
/// error if it cannot be opened.
pub(crate) async fn open(
    url: &CatalogUrl,
    project: &ProjectId,
    token: Option<&str>,
    access: Access,
) -> CliResult<Opened> {
    match url {
        CatalogUrl::SqliteDir(dir) => {
            let file = dir.join(format!("{project}.db"));
            if access == Access::Existing && !file.exists() {
                return Err(missing_file(dir, project));
            }
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    CliError::failed(
                        "io",
                        format!("cannot create the catalog directory {}: {e}", dir.display()),
                    )
                    .hint("choose a writable place with --catalog sqlite://DIR/")
                })?;
            }
            open_sqlite(url, &file, project)
        }
        CatalogUrl::SqliteFile(file) => {
            if access == Access::Existing && !file.exists() {
                return Err(CliError::invalid(
                    "no_catalog",
                    format!("there is no catalog at {}", file.display()),
                )
                .hint("check --catalog, or create it with `hakiri apply -f hakiri.toml` or `hakiri migrate`"));
            }
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    CliError::failed(
                        "io",
                        format!("cannot create the directory {}: {e}", parent.display()),
                    )
                })?;
            }
            open_sqlite(url, file, project)
        }
        CatalogUrl::Memory => {
            output::note(
                "note: memory:// keeps nothing after this command exits; use sqlite:// to keep state",
            );
            Ok(Opened {
                catalog: Arc::new(MemoryCatalog::new(project.clone())),
                url: url.clone(),
                file: None,
                server: None,
            })
        }
        CatalogUrl::Http(base) => {
            let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
                return Err(CliError::invalid(
                    "no_token",
                    format!("the catalog server at {base} needs a bearer token"),
                )
                .hint("pass --token TOKEN or set HAKIRI_TOKEN"));
            };
            let server = Arc::new(HttpCatalog::connect(
                base,
                project.clone(),
                token,
                HttpConfig::default(),
            )?);
            Ok(Opened {
                catalog: server.clone(),
                url: url.clone(),
                file: None,
                server: Some(server),
            })
        }
        CatalogUrl::Postgres(raw) => crate::postgres::open(raw, url, project, access).await,
    }
}

fn open_sqlite(url: &CatalogUrl, file: &Path, project: &ProjectId) -> CliResult<Opened> {
    let catalog = SqliteCatalog::open(file, project.clone(), SqliteConfig::default()).map_err(
        |e| {
            let hint = match &e {
                hakiri_core::Error::InvalidArgument(_) => format!(
                    "{} belongs to another project; use a directory URL (sqlite://DIR/) so each project gets its own file",
                    file.display()
                ),
                _ => format!(
                    "check that {} is a readable, writable SQLite file and that no other process holds it locked",
                    file.display()
                ),
            };
            CliError::from(e).replace_hint(hint)
        },
    )?;
    Ok(Opened {
        catalog: Arc::new(catalog),
        url: url.clone(),
        file: Some(file.to_path_buf()),
        server: None,
    })
}

/// The error for a project with no file in a catalog directory, naming the projects there.
fn missing_file(dir: &Path, project: &ProjectId) -> CliError {
    let mut projects: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".db").map(str::to_owned)
        })
        .collect();
    projects.sort();
    let projects: Vec<&str> = projects.iter().map(String::as_str).collect();
    missing_project(
        &format!("{} (no {project}.db)", dir.display()),
        project,
        &projects,
    )
}

/// The error for a project that `catalog` does not hold, naming the `projects` it does.
pub(crate) fn missing_project(catalog: &str, project: &ProjectId, projects: &[&str]) -> CliError {
    let error = CliError::invalid(
        "no_catalog",
        format!("project {project} has no catalog in {catalog}"),
    );
    if projects.is_empty() {
        error.hint(format!(
            "create it with `hakiri --project {project} apply -f hakiri.toml`, or point --catalog at an existing catalog"
        ))
    } else {
        // A shared database may hold many projects: name a few.
        const SHOWN: usize = 10;
        let mut named = projects[..projects.len().min(SHOWN)].join(", ");
        if projects.len() > SHOWN {
            named.push_str(&format!(" and {} more", projects.len() - SHOWN));
        }
        error.hint(format!(
            "projects in this catalog: {named}; choose one with --project, or create {project} with `hakiri apply`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_backends() {
        assert_eq!(
            CatalogUrl::parse("sqlite://.hakiri/").unwrap(),
            CatalogUrl::SqliteDir(".hakiri/".into())
        );
        assert_eq!(
            CatalogUrl::parse("sqlite:///var/lib/hakiri/acme.db").unwrap(),
            CatalogUrl::SqliteFile("/var/lib/hakiri/acme.db".into())
        );
        assert_eq!(CatalogUrl::parse("memory://").unwrap(), CatalogUrl::Memory);
        assert!(matches!(
            CatalogUrl::parse("postgres://u:p@db/hakiri").unwrap(),
            CatalogUrl::Postgres(_)
        ));
        assert!(matches!(
            CatalogUrl::parse("https://hakiri.example.com").unwrap(),
            CatalogUrl::Http(_)
        ));
        let bad = CatalogUrl::parse("mysql://x").unwrap_err().render_text();
        assert!(bad.contains("sqlite://DIR/"), "{bad}");
        assert!(CatalogUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn passwords_are_redacted_in_messages() {
        for (raw, shown) in [
            (
                "postgres://hakiri:s3cret@db:5432/hakiri",
                "postgres://hakiri:***@db:5432/hakiri",
            ),
            (
                "postgres://hakiri@db/hakiri?sslmode=require&password=s3cret",
                "postgres://hakiri@db/hakiri?sslmode=require&password=***",
            ),
            // A password with an '@' in it, percent-encoded as it must be.
            (
                "postgresql://u:p%40ss@db/h?password=again",
                "postgresql://u:***@db/h?password=***",
            ),
            ("postgres://db/hakiri", "postgres://db/hakiri"),
        ] {
            let url = CatalogUrl::parse(raw).unwrap();
            assert_eq!(url.to_string(), shown, "{raw}");
            assert!(!url.to_string().contains("s3cret"));
        }
    }
}
