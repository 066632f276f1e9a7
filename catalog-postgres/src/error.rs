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

/// Maps a driver error to the port's error.
///
/// - `23505` (unique violation) → `AlreadyExists(unique)`: constraints decide, the code never
///   checks before inserting. Without an entity it is a bug in the catalog → `Backend`.
/// - `40001` / `40P01` (serialization failure, deadlock), `55P03` (lock not available), `57014`
///   (statement timeout), `53300` (too many connections), `25P03` (the server ended a session
///   idle in its transaction for too long: ADR 0015), class `08` (connection exception),
///   class `57P` (server shutting down or restarting), and every I/O, TLS, protocol or pool
///   failure → `Unavailable`: retryable, the next attempt gets a fresh connection.
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
}
