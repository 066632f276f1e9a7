//! `GET /v1/projects/{project}/events`: the event log as Server-Sent Events.
//!
//! The query, where a stream starts and the framing are the protocol's
//! (`hakiri_protocol::events`), shared with the Worker: one message per event (`id: <seq>`,
//! `data: <the event as JSON>`); a stream starts after `Last-Event-ID`, else `?after=N`, else
//! with the last `?tail=N` events, else at the beginning; `?pipeline=ID` keeps that pipeline's
//! events only, read through the stores' index on it.
//!
//! The stream reads the catalog page by page as a client consumes it and looks for new events
//! every poll interval once it has shown them all; each stream reads on its own, so a slow
//! consumer holds back nobody else, writers least of all. Comments keep idle connections open.
//! A catalog error ends the stream with an `error` message; the client reconnects with its
//! `Last-Event-ID` and misses nothing. So does the server's shutdown, which ends every stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use hakiri_core::{Catalog, CatalogExt, Error, Limit, PipelineId};
use hakiri_protocol::events::{
    self, error_frame, frame, EventsQuery, Start, KEEP_ALIVE, KEEP_ALIVE_FRAME, LAST_EVENT_ID,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ApiError, App};

/// Where a stream is.
struct Cursor {
    catalog: Arc<dyn Catalog>,
    pipeline: Option<PipelineId>,
    after: u64,
    poll: Duration,
    /// When the stream last sent something: a keep-alive is due `KEEP_ALIVE` after it.
    sent: Instant,
    ended: bool,
    /// The server is stopping: the stream ends, so that the connection can close.
    stop: CancellationToken,
}

impl Cursor {
    /// The next chunk of the stream — a page of events, a keep-alive or an error — waiting for
    /// new events when none is left.
    async fn next(mut self) -> Option<(Result<String, Infallible>, Self)> {
        if self.ended {
            return None;
        }
        loop {
            let page = match &self.pipeline {
                Some(pipeline) => {
                    self.catalog
                        .pipeline_events(pipeline, self.after, Limit::MAX)
                        .await
                }
                None => self.catalog.events(self.after, Limit::MAX).await,
            };
            match page {
                Ok(page) if page.is_empty() => {
                    let keep_alive = self.sent + KEEP_ALIVE;
                    if Instant::now() >= keep_alive {
                        self.sent = Instant::now();
                        return Some((Ok(KEEP_ALIVE_FRAME.to_owned()), self));
                    }
                    tokio::select! {
                        () = self.stop.cancelled() => return None,
                        () = tokio::time::sleep_until(keep_alive.min(Instant::now() + self.poll)) => {}
                    }
                }
                Ok(page) => {
                    self.after = page.last().map_or(self.after, |e| e.seq);
                    self.sent = Instant::now();
                    return Some((Ok(page.iter().map(frame).collect()), self));
                }
                Err(error) => {
                    self.ended = true;
                    return Some((Ok(error_frame(&error)), self));
                }
            }
        }
    }
}

pub(super) async fn stream(
    State(app): State<Arc<App>>,
    Path(project): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let catalog = app.catalog(&project).await?;
    let query = EventsQuery::from_pairs(pairs)?;
    let last_event_id = match headers.get(LAST_EVENT_ID) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| Error::invalid("Last-Event-ID must be an event's sequence number"))?,
        ),
    };
    let after = match events::start(last_event_id, &query)? {
        Start::After(after) => after,
        Start::Tail(n) => catalog.tail_after(query.pipeline.as_ref(), n).await?,
    };
    let cursor = Cursor {
        catalog,
        pipeline: query.pipeline,
        after,
        poll: app.poll,
        sent: Instant::now(),
        ended: false,
        stop: app.stop.clone(),
    };
    let body = Body::from_stream(stream::unfold(cursor, Cursor::next));
    Ok((
        [
            (CONTENT_TYPE, events::CONTENT_TYPE),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}
