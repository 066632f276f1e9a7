//! The one conversion from the driver's errors into the port's [`Error`] (ADR 0002).
//!
//! Nothing else in the crate inspects a `sqlx::Error`: every call site maps through [`convert`]
//! (or [`db`], its shorthand when no unique constraint can be involved), so no driver error
//! crosses the port and every SQLSTATE means the same thing everywhere.

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
/// - anything else → `Backend`, with the driver's message.
pub(crate) fn convert(e: sqlx::Error, unique: Option<Entity>) -> Error {
    use sqlx::Error as E;
    let error = match &e {
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                "23505" => match unique {
                    Some(entity) => Error::AlreadyExists(entity),
                    None => Error::Backend(format!("unexpected unique violation: {e}")),
                },
                "40001" | "40P01" | "55P03" | "57014" | "53300" | "25P03" => {
                    Error::Unavailable(format!("postgres asked to retry ({code}): {e}"))
                }
                c if c.starts_with("08") || c.starts_with("57P") => {
                    Error::Unavailable(format!("postgres connection lost ({code}): {e}"))
                }
                _ => Error::Backend(format!("postgres error {code}: {e}")),
            }
        }
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed => Error::Unavailable(format!("postgres unreachable: {e}")),
        _ => Error::Backend(format!("postgres driver error: {e}")),
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
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            sqlx::Error::Protocol("unexpected end of stream".into()),
        ] {
            assert!(matches!(db(e), Error::Unavailable(_)));
        }
        assert!(matches!(db(sqlx::Error::RowNotFound), Error::Backend(_)));
    }
}
