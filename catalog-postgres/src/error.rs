//! The one conversion from the driver's errors into the port's [`Error`] (ADR 0002).
//!
//! Nothing else in the crate inspects a `sqlx::Error`: every call site maps through [`convert`]
//! (or [`db`], its shorthand when no unique constraint can be involved, or [`connect`] when
//! opening a connection), so no driver error crosses the port and every SQLSTATE means the same
//! thing everywhere.
//!
//! Messages are built from the server's SQLSTATE and message, never from the driver's `Display`
//! of a database error, which appends the line of the server's C source that raised it.

use std::io::ErrorKind;

use hakiri_core::{Entity, Error};

/// SQLSTATE `undefined_table`: a statement names a table the database does not have.
/// Codes: <https://www.postgresql.org/docs/current/errcodes-appendix.html>.
const UNDEFINED_TABLE: &str = "42P01";

/// SQLSTATE `undefined_column`: a statement names a column its table does not have.
const UNDEFINED_COLUMN: &str = "42703";

/// Maps a driver error to the port's error.
///
/// - `23505` (unique violation) → `AlreadyExists(unique)`: constraints decide, the code never
///   checks before inserting. Without an entity it is a bug in the catalog → `Backend`.
/// - `40001` / `40P01` (serialization failure, deadlock), `55P03` (lock not available), `57014`
///   (statement timeout), `53300` (too many connections), `25P03` (the server ended a session
///   idle in its transaction for too long: ADR 0015), class `08` (connection exception),
///   class `57P` (server shutting down or restarting), and every I/O, TLS, protocol or pool
///   failure → `Unavailable`: retryable, the next attempt gets a fresh connection.
/// - `42P01` / `42703` (undefined table or column: the database lacks this build's schema) →
///   `NotMigrated`: an operator must run the migrations ([`crate::migrate`]).
/// - `3D000` (the URL's database does not exist) → `InvalidArgument`; `28000` / `28P01` (the
///   server refused the role or its password) → `Unauthenticated`: the URL must change.
/// - anything else → `Backend`, with the server's message.
pub(crate) fn convert(e: sqlx::Error, unique: Option<Entity>) -> Error {
    map(e, unique, "")
}

/// [`convert`] for a failure to open a connection to `server` (`host:port`, or a socket path):
/// the message names the server and says the cause in words (refused, no such host…).
pub(crate) fn connect(e: sqlx::Error, server: &str) -> Error {
    let cause = match &e {
        sqlx::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => {
                "connection refused: nothing listens there (is the server running, on that port?)"
                    .to_owned()
            }
            ErrorKind::TimedOut => "the connection timed out".to_owned(),
            ErrorKind::NotFound => "no such socket".to_owned(),
            // Name resolution failures have no kind of their own; getaddrinfo's text says it.
            _ if io.to_string().contains("lookup address") => {
                format!("cannot resolve the host name ({io})")
            }
            _ => io.to_string(),
        },
        sqlx::Error::Tls(tls) => format!("TLS failed: {tls}"),
        _ => return map(e, None, &format!(" at {server}")),
    };
    tracing::debug!(error = %e, "postgres connect error");
    Error::Unavailable(format!("cannot connect to postgres at {server}: {cause}"))
}

/// [`convert`], with `at` (empty, or ` at host:port`) after "postgres" in messages.
fn map(e: sqlx::Error, unique: Option<Entity>, at: &str) -> Error {
    use sqlx::Error as E;
    let error = match &e {
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = db.message();
            match code.as_str() {
                "23505" => match unique {
                    Some(entity) => Error::AlreadyExists(entity),
                    None => Error::Backend(format!("unexpected unique violation: {message}")),
                },
                "40001" | "40P01" | "55P03" | "57014" | "53300" | "25P03" => {
                    Error::Unavailable(format!("postgres{at} asked to retry ({code}): {message}"))
                }
                c if c.starts_with("08") || c.starts_with("57P") => {
                    Error::Unavailable(format!("postgres{at} connection lost ({code}): {message}"))
                }
                UNDEFINED_TABLE | UNDEFINED_COLUMN => Error::NotMigrated(format!(
                    "postgres{at} lacks the catalog's tables or columns ({code}: {message}); \
                     run the catalog's migrations"
                )),
                "3D000" => Error::invalid(format!(
                    "postgres{at} has no such database ({code}): {message}"
                )),
                "28000" | "28P01" => Error::Unauthenticated(format!(
                    "postgres{at} refused the login ({code}): {message}"
                )),
                _ => Error::Backend(format!("postgres{at} error {code}: {message}")),
            }
        }
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed => Error::Unavailable(format!("postgres{at} unreachable: {e}")),
        E::ColumnDecode { index, source } => corrupt(index, source),
        _ => Error::Backend(format!("postgres{at} driver error: {e}")),
    };
    tracing::debug!(error = %e, mapped = %error, "postgres error");
    error
}

/// [`convert`] for statements that cannot violate a unique constraint.
pub(crate) fn db(e: sqlx::Error) -> Error {
    convert(e, None)
}

/// A stored value that does not decode: the database holds something this build cannot read.
pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend(format!("stored {what} cannot be read: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_retryable() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(ErrorKind::ConnectionReset)),
            sqlx::Error::Protocol("unexpected end of stream".into()),
        ] {
            assert!(matches!(db(e), Error::Unavailable(_)));
        }
        assert!(matches!(db(sqlx::Error::RowNotFound), Error::Backend(_)));
    }

    /// A database without the catalog's tables, or with a table missing a column, is
    /// `NotMigrated` — decided by the SQLSTATE, whatever the server's message says.
    #[tokio::test]
    async fn missing_tables_or_columns_mean_not_migrated() {
        use sqlx::postgres::PgConnectOptions;

        let url = hakiri_test_kit::postgres::shared().url();
        let config = crate::PostgresConfig::default().max_connections(1);
        let admin = config.connect(url).await.unwrap_or_else(|e| {
            panic!(
                "connect to {url}: {e}. {}",
                hakiri_test_kit::postgres::HOW_TO_GET_ONE
            )
        });
        let schema = format!("unmigrated_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        let options: PgConnectOptions = config
            .connect_options(url)
            .unwrap()
            .options([("search_path", schema.as_str())]);
        let empty = config.pool_options().connect_lazy_with(options);

        let error = crate::projects(&empty).await.unwrap_err();
        assert!(matches!(error, Error::NotMigrated(_)), "{error:?}");

        // A table of an older schema, without the column this build reads.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {schema}.projects (name text)"
        )))
        .execute(&admin)
        .await
        .unwrap();
        let error = crate::projects(&empty).await.unwrap_err();
        assert!(matches!(error, Error::NotMigrated(_)), "{error:?}");
    }

    #[test]
    fn a_column_that_does_not_decode_names_the_column() {
        let e = sqlx::Error::ColumnDecode {
            index: "body".into(),
            source: "expected value at line 1 column 1".into(),
        };
        assert!(matches!(db(e), Error::Backend(m) if m.starts_with("stored body cannot be read")));
    }
}
