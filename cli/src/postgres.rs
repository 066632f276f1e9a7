//! The Postgres catalog URL: a pool, the migrations, the catalog.

use std::sync::Arc;

use hakiri_catalog_postgres::{
    migrate as run_migrations, projects, register_project, PgPool, PostgresCatalog, PostgresConfig,
};
use hakiri_core::ProjectId;

use crate::error::{CliError, CliResult};
use crate::target::{missing_project, Access, CatalogUrl, Opened};

/// Connections of the pool a command opens.
const COMMAND_CONNECTIONS: u32 = 4;

/// Connects a small pool: `raw` is the URL as given, `url` the parsed form (shown redacted).
async fn pool(raw: &str, url: &CatalogUrl) -> CliResult<PgPool> {
    pool_of(raw, url, COMMAND_CONNECTIONS).await
}

/// Connects a pool of at most `connections`.
pub(crate) async fn pool_of(raw: &str, url: &CatalogUrl, connections: u32) -> CliResult<PgPool> {
    let config = PostgresConfig::default()
        .max_connections(connections)
        .application_name("hakiri-cli");
    // Parsed first, so that an `InvalidArgument` from connecting is about the database.
    let options = config.connect_options(raw).map_err(|e| {
        CliError::from(e).replace_hint(
            "write postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=verify-full&sslrootcert=…]",
        )
    })?;
    let host = options.get_host();
    let port = options.get_port();
    config.connect(raw).await.map_err(|e| {
        let hint = match &e {
            hakiri_core::Error::InvalidArgument(_) => {
                let database = options.get_database().unwrap_or(options.get_username());
                format!(
                    "create it (`createdb -h {host} -p {port} {database}`) and run `hakiri --catalog {url} migrate`, or fix the database name at the end of the URL"
                )
            }
            hakiri_core::Error::Unauthenticated(_) => format!(
                "check the user ({}) and password in the URL (or PGPASSWORD), and that the server's pg_hba.conf lets this user in from here",
                options.get_username()
            ),
            _ => format!(
                "check that a Postgres server runs at {host}:{port} and is reachable from here (the host and port of --catalog / HAKIRI_CATALOG), then retry"
            ),
        };
        CliError::from(e).replace_hint(hint)
    })
}

/// Opens the catalog of `project` on a Postgres URL. The database must have been migrated
/// (`hakiri migrate`): other commands never change the schema, which needs more privileges.
/// With [`Access::Existing`] the project must exist, as a SQLite catalog's file must: a mistyped
/// `--project` is refused, naming the projects there.
pub(crate) async fn open(
    raw: &str,
    url: &CatalogUrl,
    project: &ProjectId,
    access: Access,
) -> CliResult<Opened> {
    open_on(pool(raw, url).await?, url, project, access).await
}

/// [`open`] on a pool the caller keeps: `hakiri serve` opens every project on one pool, so that
/// the connections it holds do not grow with the projects it has served.
pub(crate) async fn open_on(
    pool: PgPool,
    url: &CatalogUrl,
    project: &ProjectId,
    access: Access,
) -> CliResult<Opened> {
    if access == Access::Existing {
        // An unmigrated database is `NotMigrated`, which `commands::run` answers with the
        // migrate hint; any other error keeps its own.
        let projects = projects(&pool).await?;
        if !projects.contains(project) {
            let names: Vec<&str> = projects.iter().map(ProjectId::as_str).collect();
            return Err(missing_project(
                &format!("the Postgres catalog at {url}"),
                project,
                &names,
            ));
        }
    }
    Ok(Opened {
        catalog: Arc::new(PostgresCatalog::new(pool, project.clone())),
        url: url.clone(),
        file: None,
        server: None,
    })
}

/// Runs the catalog's migrations, then opens it.
pub(crate) async fn migrate(raw: &str, url: &CatalogUrl, project: &ProjectId) -> CliResult<Opened> {
    let pool = pool(raw, url).await?;
    run_migrations(&pool).await.map_err(|e| {
        CliError::from(e).replace_hint(
            "the role needs CREATE on the database's schema; a database migrated by a newer hakiri needs that newer hakiri",
        )
    })?;
    // As migrating a SQLite catalog creates the project's file, the project exists from now on.
    register_project(&pool, project).await?;
    Ok(Opened {
        catalog: Arc::new(PostgresCatalog::new(pool, project.clone())),
        url: url.clone(),
        file: None,
        server: None,
    })
}
