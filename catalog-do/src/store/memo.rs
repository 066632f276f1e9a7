//! What a host remembers of the cursors it wrote or read, so that a stream's next checkpoint can
//! skip reading it (ADR 0041).
//!
//! A checkpoint planned from the memo is sent as one guarded `UPDATE`
//! (`cursors::REMEMBERED_CHECKPOINT`): it writes only if the stored cursor is still exactly the
//! remembered one — the same version and the same stored text — and the lease and run conditions
//! of `check_fence` and `check_running` hold. A memo entry is therefore only a hint: one that is
//! stale (another process wrote the file, a unit rolled back after remembering, an operator reset
//! the stream) makes the guard write nothing, and the advance reads the cursor and asks the rules
//! again, as it does without a memo.

use std::collections::HashMap;

use hakiri_core::{CursorKind, CursorValue, PipelineId, StreamName};

/// Most streams one memo remembers; past it the memo starts over.
const REMEMBERED_STREAMS: usize = 4096;

/// The cursors a host last wrote or read, by pipeline and stream. Keep one per database
/// connection that writes, for as long as the connection lives; pass it to
/// [`handle`](super::handle).
#[derive(Debug, Default)]
pub struct CursorMemo {
    streams: HashMap<PipelineId, HashMap<StreamName, Remembered>>,
    len: usize,
}

/// A stream's cursor as stored, and the pipeline's cursor kind it was planned with.
#[derive(Debug, Clone)]
pub(super) struct Remembered {
    pub(super) kind: CursorKind,
    pub(super) value: CursorValue,
    /// The value's text in the `cursors` row, which the guard compares.
    pub(super) stored: String,
    pub(super) version: u64,
}

impl CursorMemo {
    /// An empty memo (a host that remembers nothing passes a fresh one to every request).
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn recall(&self, pipeline: &PipelineId, stream: &StreamName) -> Option<&Remembered> {
        self.streams.get(pipeline)?.get(stream)
    }

    pub(super) fn remember(
        &mut self,
        pipeline: &PipelineId,
        stream: &StreamName,
        remembered: Remembered,
    ) {
        if self.len >= REMEMBERED_STREAMS && self.recall(pipeline, stream).is_none() {
            self.streams.clear();
            self.len = 0;
        }
        let streams = match self.streams.get_mut(pipeline) {
            Some(streams) => streams,
            None => self.streams.entry(pipeline.clone()).or_default(),
        };
        match streams.get_mut(stream) {
            Some(slot) => *slot = remembered,
            None => {
                streams.insert(stream.clone(), remembered);
                self.len += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remembered(version: u64) -> Remembered {
        Remembered {
            kind: CursorKind::Monotonic,
            value: CursorValue::new(serde_json::json!(version)).unwrap(),
            stored: version.to_string(),
            version,
        }
    }

    #[test]
    fn a_full_memo_starts_over_and_never_grows_past_its_bound() {
        let mut memo = CursorMemo::new();
        let pipelines = [PipelineId::new("a").unwrap(), PipelineId::new("b").unwrap()];
        let stream = |i: usize| StreamName::new(format!("s{i}")).unwrap();
        for i in 0..REMEMBERED_STREAMS {
            memo.remember(&pipelines[i % 2], &stream(i), remembered(1));
        }
        assert_eq!(memo.len, REMEMBERED_STREAMS);

        // Full: a stream it knows is updated in place, and nothing is forgotten.
        memo.remember(&pipelines[0], &stream(0), remembered(2));
        assert_eq!(memo.len, REMEMBERED_STREAMS);
        let known = memo.recall(&pipelines[0], &stream(0)).unwrap();
        assert_eq!((known.version, known.stored.as_str()), (2, "2"));

        // A new stream starts it over.
        let new = stream(REMEMBERED_STREAMS);
        memo.remember(&pipelines[1], &new, remembered(1));
        assert_eq!(memo.len, 1);
        assert!(memo.recall(&pipelines[0], &stream(0)).is_none());
        assert!(memo.recall(&pipelines[1], &new).is_some());
    }
}
