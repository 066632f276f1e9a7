//! Keyset pagination: a validated page size and a page of results with the key to continue from.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A page size: 1..=[`Limit::MAX`], [`Limit::DEFAULT`] by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Limit(u32);

impl Limit {
    /// One item: the newest, the first.
    pub const ONE: Limit = Limit(1);
    /// The default page size.
    pub const DEFAULT: Limit = Limit(100);
    /// The largest page size: bounds the work and memory of one call.
    pub const MAX: Limit = Limit(1000);

    /// Validates `n`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] outside 1..=1000.
    pub fn new(n: u32) -> Result<Self> {
        if (1..=Self::MAX.0).contains(&n) {
            Ok(Self(n))
        } else {
            Err(Error::invalid(format!(
                "page size {n} is outside 1..={}",
                Self::MAX.0
            )))
        }
    }

    /// The size.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The size as a `usize`.
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<u32> for Limit {
    type Error = Error;
    fn try_from(n: u32) -> Result<Self> {
        Self::new(n)
    }
}

impl From<Limit> for u32 {
    fn from(l: Limit) -> u32 {
        l.0
    }
}

/// One page of results; `next` is the key to pass to get the following page (none at the end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T, K> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// Where the next page starts, if there is one.
    pub next: Option<K>,
}

impl<T, K> Page<T, K> {
    /// Builds a page from up to `limit + 1` fetched items: the extra item, if present, only
    /// proves there is a next page, whose key is that of the last item kept.
    pub fn from_overfetch(mut items: Vec<T>, limit: Limit, key: impl Fn(&T) -> K) -> Self {
        let next = if items.len() > limit.as_usize() {
            items.truncate(limit.as_usize());
            items.last().map(key)
        } else {
            None
        };
        Self { items, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        assert!(Limit::new(0).is_err());
        assert!(Limit::new(1001).is_err());
        assert_eq!(Limit::new(5).unwrap().get(), 5);
        assert!(serde_json::from_str::<Limit>("0").is_err());
    }

    #[test]
    fn overfetch_decides_whether_there_is_a_next_page() {
        let limit = Limit::new(2).unwrap();
        let page = Page::from_overfetch(vec![1, 2, 3], limit, |n| *n);
        assert_eq!((page.items, page.next), (vec![1, 2], Some(2)));
        let page = Page::from_overfetch(vec![1, 2], limit, |n| *n);
        assert_eq!((page.items, page.next), (vec![1, 2], None));
    }
}
