//! [`EventFeed`]: a project's event log followed live from a catalog server, through
//! `GET {base}/v1/projects/{project}/events` (Server-Sent Events, `id: <seq>`).
//!
//! The feed remembers the last event it gave and asks for the log after it whenever it
//! (re)connects, so a dropped connection, a server restart or a stream the server ends (its
//! shutdown, its lifetime cap) loses nothing and repeats nothing. A stream that goes quiet for
//! longer than three of the server's keep-alive intervals counts as dropped. What the caller sees
//! of such trouble: [`EventFeed::next`] reconnects once on its own; if that fails it returns the
//! error (`Unavailable` for transport trouble), and the next call tries again.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::stream::{self, Stream, StreamExt};
use hakiri_core::{Error, Event, PipelineId, Result};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::Url;

use crate::events::{CONTENT_TYPE, KEEP_ALIVE};
use crate::http::status_error;
use crate::wire::Reply;

/// How long a stream may stay silent, keep-alives included, before it counts as dropped: three
/// of the servers' keep-alive intervals.
const SILENCE: Duration = Duration::from_secs(3 * KEEP_ALIVE.as_secs());

/// How long one connection may last before the client itself ends it and reconnects; a bound on
/// the request, which a server's own lifetime cap normally reaches first.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// What breaks a stream below the SSE parser.
#[derive(Debug, thiserror::Error)]
enum Broken {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("nothing arrived for {SILENCE:?}, not even a keep-alive")]
    Silent,
}

type Messages = Pin<
    Box<
        dyn Stream<Item = std::result::Result<eventsource_stream::Event, EventStreamError<Broken>>>
            + Send,
    >,
>;

/// A project's event log, followed live from a catalog server. Made by
/// [`HttpTransport::follow`](crate::HttpTransport::follow).
pub struct EventFeed {
    client: reqwest::Client,
    url: Url,
    authorization: HeaderValue,
    pipeline: Option<PipelineId>,
    after: u64,
    messages: Option<Messages>,
}

impl std::fmt::Debug for EventFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("EventFeed")
            .field("url", &self.url.as_str())
            .field("pipeline", &self.pipeline)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl EventFeed {
    pub(crate) fn new(
        client: reqwest::Client,
        url: Url,
        authorization: HeaderValue,
        after: u64,
        pipeline: Option<PipelineId>,
    ) -> Self {
        Self {
            client,
            url,
            authorization,
            pipeline,
            after,
            messages: None,
        }
    }

    /// The sequence number of the last event given (or where the feed started).
    pub fn after(&self) -> u64 {
        self.after
    }

    /// The next event of the log (of the pipeline, if the feed has one), waiting for it.
    ///
    /// # Errors
    /// The server's refusal as its typed error (`Unauthenticated`, `PermissionDenied`,
    /// `NotFound`, …); `Unavailable` when the server cannot be reached again after a dropped
    /// stream. The feed stays usable: calling again reconnects from the last event given.
    pub async fn next(&mut self) -> Result<Event> {
        // A stream that ends or breaks is reconnected once at once; one that cannot be reached
        // is the caller's to wait for.
        let mut reconnected = false;
        loop {
            let messages = match &mut self.messages {
                Some(messages) => messages,
                None => self.messages.insert(self.connect().await?),
            };
            let message = match messages.next().await {
                Some(Ok(message)) => message,
                ended => {
                    self.messages = None;
                    if reconnected {
                        return Err(Error::Unavailable(match ended {
                            Some(Err(e)) => {
                                format!("the event stream from {} broke: {e}", self.url)
                            }
                            _ => format!("the event stream from {} ended", self.url),
                        }));
                    }
                    reconnected = true;
                    continue;
                }
            };
            match message.event.as_str() {
                "" | "message" => {
                    let event: Event = serde_json::from_str(&message.data).map_err(|e| {
                        Error::Backend(format!("an event from {} is not one: {e}", self.url))
                    })?;
                    // A server that starts earlier than asked repeats nothing here.
                    if event.seq > self.after {
                        self.after = event.seq;
                        return Ok(event);
                    }
                }
                "error" => {
                    // The server ends the stream after an error event.
                    self.messages = None;
                    return Err(match serde_json::from_str::<Reply>(&message.data) {
                        Ok(Reply::Err(error)) => error,
                        _ => Error::Backend(format!(
                            "the event stream from {} failed: {}",
                            self.url, message.data
                        )),
                    });
                }
                // Event types a later server may add.
                _ => {}
            }
        }
    }

    /// Opens the stream after the last event given.
    async fn connect(&self) -> Result<Messages> {
        let mut url = self.url.clone();
        url.query_pairs_mut()
            .append_pair("after", &self.after.to_string());
        if let Some(pipeline) = &self.pipeline {
            url.query_pairs_mut()
                .append_pair("pipeline", pipeline.as_str());
        }
        let response = self
            .client
            .get(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(ACCEPT, CONTENT_TYPE)
            .timeout(CONNECTION_LIFETIME)
            .send()
            .await
            .map_err(|e| {
                Error::Unavailable(format!("cannot follow the events at {}: {e}", self.url))
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(status_error(&self.url, status, &body));
        }
        let chunks = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(Broken::from));
        Ok(Box::pin(silence_breaks(chunks).eventsource()))
    }
}

/// `chunks`, broken off with [`Broken::Silent`] when none arrives for [`SILENCE`].
fn silence_breaks<T, S>(chunks: S) -> impl Stream<Item = std::result::Result<T, Broken>> + Send
where
    T: Send,
    S: Stream<Item = std::result::Result<T, Broken>> + Send,
{
    stream::unfold(Some(Box::pin(chunks)), |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout(SILENCE, chunks.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(chunks))),
            Ok(None) => None,
            Err(_) => Some((Err(Broken::Silent), None)),
        }
    })
}
