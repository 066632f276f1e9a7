//! `GET /v1/projects/{project}/events`: the event log as Server-Sent Events.
//!
//! Each event is one SSE message, `id: <seq>` and `data: <the event as JSON>`. Where the stream
//! starts, first that applies:
//! - `Last-Event-ID` (a reconnecting `EventSource` sends it): after that number;
//! - `?after=N`: after N;
//! - `?tail=N`: the last N events;
//! - else the whole log.
//!
//! `?pipeline=ID` keeps that pipeline's events only, read through the stores' index on it.
//! The stream reads the catalog page by page as a client consumes it and looks for new events
//! every poll interval once it has shown them all; each stream reads on its own, so a slow
//! consumer holds back nobody else, writers least of all. Comments keep idle connections open.
//! A catalog error ends the stream with an `error` event; the client reconnects with its
//! `Last-Event-ID` and misses nothing. So does the server's shutdown, which ends every stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use hakiri_core::{Catalog, CatalogExt, Error, Event, Limit, PipelineId};
use hakiri_protocol::Reply;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{ApiError, App};

/// How often an idle stream sends a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The query of an event stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    after: Option<u64>,
    tail: Option<u64>,
    pipeline: Option<String>,
}

/// Where a stream is.
struct Cursor {
    catalog: Arc<dyn Catalog>,
    pipeline: Option<PipelineId>,
    after: u64,
    shown: VecDeque<Event>,
    poll: Duration,
    ended: bool,
    /// The server is stopping: the stream ends, so that the connection can close.
    stop: CancellationToken,
}

impl Cursor {
    /// The next SSE message, waiting for new events when none is left.
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(event) = self.shown.pop_front() {
                let message = SseEvent::default()
                    .id(event.seq.to_string())
                    .json_data(&event)
                    .unwrap_or_else(|e| SseEvent::default().event("error").data(e.to_string()));
                return Some((Ok(message), self));
            }
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
                    tokio::select! {
                        () = self.stop.cancelled() => return None,
                        () = tokio::time::sleep(self.poll) => {}
                    }
                }
                Ok(page) => {
                    self.after = page.last().map_or(self.after, |e| e.seq);
                    self.shown.extend(page);
                }
                Err(error) => {
                    self.ended = true;
                    let message = SseEvent::default()
                        .event("error")
                        .json_data(Reply::Err(error))
                        .unwrap_or_else(|e| SseEvent::default().event("error").data(e.to_string()));
                    return Some((Ok(message), self));
                }
            }
        }
    }
}

/// The `Last-Event-ID` header, if the client sent one.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| Error::invalid("Last-Event-ID must be an event's sequence number").into())
}

pub(super) async fn stream(
    State(app): State<Arc<App>>,
    Path(project): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let catalog = app.catalog(&project).await?;
    let pipeline = query.pipeline.map(PipelineId::new).transpose()?;
    let after = match (last_event_id(&headers)?, query.after, query.tail) {
        (Some(after), _, _) | (None, Some(after), _) => after,
        (None, None, Some(n)) => catalog.tail_after(pipeline.as_ref(), n).await?,
        (None, None, None) => 0,
    };
    let cursor = Cursor {
        catalog,
        pipeline,
        after,
        shown: VecDeque::new(),
        poll: app.poll,
        ended: false,
        stop: app.stop.clone(),
    };
    let events = stream::unfold(cursor, Cursor::next);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}
