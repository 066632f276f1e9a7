//! An append-only list that never moves what it holds (ADR 0036).
//!
//! A `Vec` that outgrows its capacity copies every entry into a new allocation; for the event log
//! and cursor histories, which only grow, that copy and its page faults were about a quarter of an advance's time. A [`Log`]
//! keeps its entries in chunks of doubling size instead: a push writes one entry (and now and then
//! allocates a chunk), a read by index is a little arithmetic and two loads.

use std::fmt;

/// How many entries the first chunk holds; chunk `k` holds `FIRST << k`.
const FIRST: usize = 8;

/// An append-only list in chunks of doubling size; entry `i` never moves once pushed.
pub(crate) struct Log<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Log<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn push(&mut self, entry: T) {
        // Chunk k is full at `FIRST << k` entries, whatever capacity its allocation has: `get`
        // counts on that size.
        let full = FIRST << self.chunks.len().saturating_sub(1);
        let chunk = match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < full => chunk,
            _ => {
                self.chunks
                    .push(Vec::with_capacity(FIRST << self.chunks.len()));
                self.chunks.last_mut().expect("a chunk was just pushed")
            }
        };
        chunk.push(entry);
        self.len += 1;
    }

    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        if index >= self.len {
            return None;
        }
        // Chunk k starts at FIRST · (2^k − 1): k is the base-2 logarithm of index / FIRST + 1.
        let k = (index / FIRST + 1).ilog2() as usize;
        self.chunks.get(k)?.get(index - FIRST * ((1 << k) - 1))
    }

    /// The newest entry.
    pub(crate) fn last(&self) -> Option<&T> {
        self.get(self.len.checked_sub(1)?)
    }

    /// Every entry, oldest first (reversible: `.rev()` gives newest first).
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> FromIterator<T> for Log<T> {
    fn from_iter<I: IntoIterator<Item = T>>(entries: I) -> Self {
        let mut log = Self::default();
        for entry in entries {
            log.push(entry);
        }
        log
    }
}

impl<T> IntoIterator for Log<T> {
    type Item = T;
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Vec<T>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.into_iter().flatten()
    }
}

impl<T: fmt::Debug> fmt::Debug for Log<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_found_at_its_index_across_chunk_boundaries() {
        let log: Log<usize> = (0..1000).collect();
        assert_eq!(log.len(), 1000);
        for i in 0..1000 {
            assert_eq!(log.get(i), Some(&i), "entry {i}");
        }
        assert_eq!(log.get(1000), None);
        assert_eq!(log.get(usize::MAX), None);
        assert_eq!(log.last(), Some(&999));
        assert_eq!(Log::<usize>::default().last(), None);
    }

    #[test]
    fn entries_iterate_in_order_both_ways() {
        let log: Log<usize> = (0..100).collect();
        assert!(log.iter().copied().eq(0..100));
        assert!(log.iter().rev().copied().eq((0..100).rev()));
        assert!(Log::<usize>::default().is_empty());
    }

    #[test]
    fn chunks_hold_their_size_even_when_an_allocation_is_larger() {
        // Zero-sized entries get a capacity of `usize::MAX` from every allocation.
        let log: Log<()> = std::iter::repeat_n((), 100).collect();
        assert_eq!(log.len(), 100);
        assert!((0..100).all(|i| log.get(i).is_some()));
        assert_eq!(log.get(100), None);
    }

    #[test]
    fn a_pushed_entry_never_moves() {
        let mut log = Log::default();
        log.push(0_u64);
        let first: *const u64 = log.get(0).expect("pushed");
        for i in 1..10_000 {
            log.push(i);
        }
        assert!(std::ptr::eq(first, log.get(0).expect("pushed")));
    }
}
