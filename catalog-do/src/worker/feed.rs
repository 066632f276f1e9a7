//! `/events` on the object: the event log as Server-Sent Events, woken by commits (ADR 0025).
//!
//! The query, the start position and the framing are the protocol's (`hakiri_protocol::events`),
//! the same as `hakiri serve`'s. Each open stream is a [`Feed`] that reads the log from the
//! object's own store, a page at a time, after the last event it sent — first what was there
//! when it opened, then what later writes add. The object keeps one wake-up channel per open
//! stream ([`Feeds`]); a write that commits only wakes them: one channel send per stream, no
//! read and never an `await` in the writer's request. The feed reads only when the runtime pulls its
//! next chunk (the body stream's high-water mark is 0), so a reader that stops reading leaves at
//! most one page (`Limit::DEFAULT` events) and one pending wake-up queued in the object, however
//! much is written meanwhile: nothing to cap, and no stream to end for falling behind — it picks
//! up from the store where it stopped.
//!
//! A stream ends after [`LIFETIME`], so that a forgotten tab cannot keep the object awake for
//! ever; an `EventSource` reconnects by itself with `Last-Event-ID` and misses nothing. An idle
//! stream sends a keep-alive comment every `KEEP_ALIVE`; that is also how a stream whose client
//! went away ends: the runtime notices a closed connection when the stream next writes to it
//! (measured in workerd), and cancels the stream, which drops its receiver. With the test hooks on, the headers
//! `x-hakiri-stream-lifetime-ms` and `x-hakiri-keep-alive-ms` shorten both.

use std::cell::RefCell;
use std::pin::pin;
use std::time::Duration;

use futures_channel::mpsc;
use futures_util::future::{select, Either};
use futures_util::stream::{self, StreamExt};
use hakiri_core::{Error, Limit, PipelineId, Result};
use hakiri_protocol::events::{
    self, error_frame, frame, EventsQuery, Start, KEEP_ALIVE, KEEP_ALIVE_FRAME, LAST_EVENT_ID,
};
use hakiri_protocol::Reply;
use worker::{Delay, Headers, Request, Response};

use super::object::DoSql;
use super::reply::reply;
use super::{KEEP_ALIVE_HEADER, LIFETIME_HEADER};
use crate::store;

/// How long one stream lasts before it ends and its client reconnects.
pub(super) const LIFETIME: Duration = Duration::from_secs(10 * 60);

/// How many streams one object holds open at once; more are refused with 503 until some close.
/// Each one keeps the object awake and costs every write a wake-up.
const MAX_STREAMS: usize = 256;

/// The open event streams of the object.
#[derive(Default)]
pub(super) struct Feeds {
    /// One wake-up sender per open stream. The object runs on one thread and never holds the
    /// borrow across an `await`.
    wakers: RefCell<Vec<mpsc::Sender<()>>>,
}

impl Feeds {
    /// Wakes every open stream after a commit; forgets the closed ones. A stream that has not
    /// used its last wake-up yet (its reader is slow) has one pending, which is enough: it reads
    /// everything new when it wakes.
    pub(super) fn wake(&self) {
        self.wakers
            .borrow_mut()
            .retain_mut(|waker| match waker.try_send(()) {
                Ok(()) => true,
                Err(e) => e.is_full(),
            });
    }

    /// Answers `/events`: a stream from where the request asks (or a JSON `Reply` saying why
    /// not). The object is ready (migrated, its project bound).
    pub(super) fn open(&self, req: &Request, sql: &DoSql, hooks: bool) -> worker::Result<Response> {
        let feed = match self.start(req, sql, hooks) {
            Ok(feed) => feed,
            Err(e) => return reply(&Reply::Err(e), None),
        };
        let headers = Headers::new();
        headers.set("content-type", events::CONTENT_TYPE)?;
        headers.set("cache-control", "no-cache")?;
        Ok(Response::from_stream(stream::unfold(feed, Feed::next))?.with_headers(headers))
    }

    fn start(&self, req: &Request, sql: &DoSql, hooks: bool) -> Result<Feed> {
        let url = req
            .url()
            .map_err(|e| Error::invalid(format!("cannot read the request's URL: {e}")))?;
        let query = EventsQuery::from_pairs(url.query_pairs())?;
        let last_event_id = req.headers().get(LAST_EVENT_ID).ok().flatten();
        let mut sql = sql.clone();
        let after = match events::start(last_event_id.as_deref(), &query)? {
            Start::After(after) => after,
            Start::Tail(n) => store::tail_after(&mut sql, query.pipeline.as_ref(), n)?,
        };
        let millis = |name: &str, default: Duration| {
            hooks
                .then(|| req.headers().get(name).ok().flatten())
                .flatten()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(default.as_millis() as f64)
        };
        let mut wakers = self.wakers.borrow_mut();
        wakers.retain(|waker| !waker.is_closed());
        if wakers.len() >= MAX_STREAMS {
            return Err(Error::Unavailable(format!(
                "this catalog already serves {MAX_STREAMS} event streams; try again later"
            )));
        }
        // One slot: wake-ups coalesce while the feed is busy or its reader slow.
        let (waker, woken) = mpsc::channel(0);
        wakers.push(waker);
        let now = js_sys::Date::now();
        Ok(Feed {
            sql,
            pipeline: query.pipeline,
            after,
            woken,
            ends_at: now + millis(LIFETIME_HEADER, LIFETIME),
            keep_alive: millis(KEEP_ALIVE_HEADER, KEEP_ALIVE),
            sent: now,
            ended: false,
        })
    }
}

/// One open stream. Times are the clock's milliseconds (`Date.now()`).
struct Feed {
    sql: DoSql,
    pipeline: Option<PipelineId>,
    /// The last event sent (or the start position).
    after: u64,
    /// Wake-ups from committed writes; ends when the object is gone.
    woken: mpsc::Receiver<()>,
    ends_at: f64,
    keep_alive: f64,
    /// When the stream last sent something.
    sent: f64,
    /// An error was sent: nothing follows.
    ended: bool,
}

impl Feed {
    /// The next chunk: the next page of events, else a keep-alive when one is due; waits for a
    /// commit when there is nothing to send. `None` ends the stream.
    async fn next(mut self) -> Option<(worker::Result<Vec<u8>>, Self)> {
        if self.ended {
            return None;
        }
        loop {
            match store::events(
                &mut self.sql,
                self.pipeline.as_ref(),
                self.after,
                Limit::DEFAULT,
            ) {
                Ok(page) if !page.is_empty() => {
                    self.after = page.last().map_or(self.after, |e| e.seq);
                    let chunk: String = page.iter().map(frame).collect();
                    return Some(self.send(chunk));
                }
                Ok(_) => {}
                Err(error) => {
                    self.ended = true;
                    return Some(self.send(error_frame(&error)));
                }
            }
            let now = js_sys::Date::now();
            if now >= self.ends_at {
                return None;
            }
            if now >= self.sent + self.keep_alive {
                return Some(self.send(KEEP_ALIVE_FRAME.to_owned()));
            }
            let wait = (self.sent + self.keep_alive).min(self.ends_at) - now;
            // A fresh timer for every wait: a `Delay` wakes the task that first polled it, and
            // each pull of the body stream is a task of its own.
            let timer = pin!(Delay::from(Duration::from_millis(wait.ceil() as u64)));
            if let Either::Left((None, _)) = select(self.woken.next(), timer).await {
                // The object dropped its sender: it is going away.
                return None;
            }
        }
    }

    fn send(mut self, chunk: String) -> (worker::Result<Vec<u8>>, Self) {
        self.sent = js_sys::Date::now();
        (Ok(chunk.into_bytes()), self)
    }
}
