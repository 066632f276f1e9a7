//! The small synchronous SQL interface both hosts implement.
//!
//! Statements use `?` placeholders (the Durable Object's `sql.exec` and rusqlite both accept
//! them). Values are what survives a JavaScript round trip: integers below 2^53, floats, text.

use hakiri_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// One SQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// An integer (kept below 2^53 so JavaScript hosts read it exactly).
    Integer(i64),
    /// A float.
    Real(f64),
    /// Text (JSON documents are stored as text).
    Text(String),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Integer(v)
    }
}

impl From<u64> for SqlValue {
    fn from(v: u64) -> Self {
        // Counters stay far below 2^53 (ADR 0005); saturate rather than wrap if one ever did not.
        SqlValue::Integer(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<u32> for SqlValue {
    fn from(v: u32) -> Self {
        SqlValue::Integer(i64::from(v))
    }
}

impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Integer(i64::from(v))
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// A result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<SqlValue>);

impl Row {
    fn get(&self, i: usize) -> Result<&SqlValue> {
        self.0
            .get(i)
            .ok_or_else(|| Error::Backend(format!("result row has no column {i}")))
    }

    /// Column `i` as an integer.
    ///
    /// # Errors
    /// [`Error::Backend`] if it is missing or not an integer.
    pub fn int(&self, i: usize) -> Result<i64> {
        match self.get(i)? {
            SqlValue::Integer(v) => Ok(*v),
            other => Err(Error::Backend(format!(
                "column {i} is {other:?}, not an integer"
            ))),
        }
    }

    /// Column `i` as an unsigned counter.
    ///
    /// # Errors
    /// [`Error::Backend`] if it is missing, not an integer, or negative.
    pub fn uint(&self, i: usize) -> Result<u64> {
        u64::try_from(self.int(i)?).map_err(|_| Error::Backend(format!("column {i} is negative")))
    }

    /// Column `i` as an integer or NULL.
    ///
    /// # Errors
    /// [`Error::Backend`] if it is missing or of another type.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.get(i)? {
            SqlValue::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    /// Column `i` as text.
    ///
    /// # Errors
    /// [`Error::Backend`] if it is missing or not text.
    pub fn text(&self, i: usize) -> Result<&str> {
        match self.get(i)? {
            SqlValue::Text(v) => Ok(v),
            other => Err(Error::Backend(format!("column {i} is {other:?}, not text"))),
        }
    }

    /// Column `i` as text or NULL.
    ///
    /// # Errors
    /// [`Error::Backend`] if it is missing or of another type.
    pub fn opt_text(&self, i: usize) -> Result<Option<&str>> {
        match self.get(i)? {
            SqlValue::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    /// Column `i`, a JSON document, decoded.
    ///
    /// # Errors
    /// [`Error::Backend`] if it is missing or does not decode.
    pub fn json<T: DeserializeOwned>(&self, i: usize) -> Result<T> {
        from_json(self.text(i)?)
    }
}

/// Decodes a stored JSON document.
///
/// # Errors
/// [`Error::Backend`]: stored documents were written by the store, so a failure means corruption.
pub fn from_json<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::Backend(format!("stored document does not decode: {e}")))
}

/// Encodes a document for storage.
///
/// # Errors
/// [`Error::Backend`] if it cannot be encoded (it always can for catalog types).
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Backend(format!("cannot encode document: {e}")))
}

/// Runs SQL statements synchronously.
pub trait Exec {
    /// Runs one statement and returns its rows.
    ///
    /// # Errors
    /// The host's failure, converted once into the catalog's error.
    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>>;

    /// Runs one statement for its effect.
    ///
    /// # Errors
    /// The host's failure, converted once into the catalog's error.
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<()> {
        self.query(sql, params).map(drop)
    }

    /// Runs one writing statement and returns how many rows it wrote.
    ///
    /// # Errors
    /// As [`Exec::query`].
    fn write(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64>;

    /// The first row of a query, if any.
    ///
    /// # Errors
    /// As [`Exec::query`].
    fn query_row(&mut self, sql: &str, params: &[SqlValue]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

impl<E: Exec + ?Sized> Exec for &mut E {
    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>> {
        (**self).query(sql, params)
    }

    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<()> {
        (**self).execute(sql, params)
    }

    fn write(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64> {
        (**self).write(sql, params)
    }
}

/// Fault injection: an [`Exec`] whose statement number `fail_at` (counting from 1) fails.
///
/// Tests run an operation through it for every `fail_at` up to the operation's statement count
/// and check that each failure leaves nothing behind (the host's atomic unit rolls back).
#[derive(Debug)]
pub struct FailAt<E> {
    inner: E,
    fail_at: usize,
    executed: usize,
}

impl<E: Exec> FailAt<E> {
    /// Wraps `inner`; statement `fail_at` (1-based) will fail.
    pub fn new(inner: E, fail_at: usize) -> Self {
        Self {
            inner,
            fail_at,
            executed: 0,
        }
    }

    /// How many statements ran (or were attempted), the failing one included.
    pub fn executed(&self) -> usize {
        self.executed
    }
}

impl<E: Exec> FailAt<E> {
    /// Counts a statement; the failure if it is the one to fail.
    fn count(&mut self) -> Result<()> {
        self.executed += 1;
        if self.executed == self.fail_at {
            return Err(Error::Unavailable(format!(
                "injected failure at statement {}",
                self.fail_at
            )));
        }
        Ok(())
    }
}

impl<E: Exec> Exec for FailAt<E> {
    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>> {
        self.count()?;
        self.inner.query(sql, params)
    }

    fn write(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64> {
        self.count()?;
        self.inner.write(sql, params)
    }
}

/// An [`Exec`] that can run a unit of work atomically: every statement of the unit commits, or,
/// if the unit returns an error, none does.
///
/// The unit is `'static` because the Durable Object host hands it to JavaScript
/// (`transactionSync`); it owns its inputs.
pub trait Atomic: Exec {
    /// Runs `unit` atomically.
    ///
    /// # Errors
    /// The unit's error (after rolling back), or the host's failure to commit.
    fn atomic<T: 'static>(
        &mut self,
        unit: impl FnOnce(&mut Self) -> Result<T> + 'static,
    ) -> Result<T>;
}

/// Builds a parameter list: `params![a, b]` is `&[SqlValue::from(a), SqlValue::from(b)]`.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::exec::SqlValue::from($value)),*][..]
    };
}
pub(crate) use params;
