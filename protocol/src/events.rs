//! The event stream every host serves at `GET /v1/projects/{project}/events`: its query, where it
//! starts, and its Server-Sent Events framing — written once, so that `hakiri serve` and the
//! Worker's Durable Object answer a client the same way.
//!
//! - One event is one message: `id: <seq>` and `data: <the event as JSON>` ([`frame`]). A
//!   reconnecting client sends the last id it saw as `Last-Event-ID` and misses nothing: `seq` is
//!   gap-free and the log is never pruned.
//! - Where a stream starts ([`start`]), first that applies: `Last-Event-ID`, `?after=N`,
//!   `?tail=N` (the last N events), else the whole log.
//! - `?pipeline=ID` keeps one pipeline's events ([`EventsQuery::pipeline`]), read through
//!   `Catalog::pipeline_events`.
//! - An idle stream sends a comment every [`KEEP_ALIVE`] ([`KEEP_ALIVE_FRAME`]).
//! - A catalog error ends the stream with an `error` message whose data is the `Reply::Err`
//!   ([`error_frame`]); errors before the stream starts are ordinary JSON replies.

use std::time::Duration;

use hakiri_core::{Error, Event, Limit, PipelineId, Result};

use crate::wire::Reply;

/// The media type of an event stream.
pub const CONTENT_TYPE: &str = "text/event-stream";

/// How long a stream stays silent before it sends [`KEEP_ALIVE_FRAME`], so that proxies and
/// load balancers do not close an idle connection.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The comment an idle stream sends; clients ignore it.
pub const KEEP_ALIVE_FRAME: &str = ": keep-alive\n\n";

/// The header a reconnecting client names its last event in.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// The query of an event stream: `after`, `tail`, `pipeline`; anything else is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsQuery {
    /// `?after=N`: the events after sequence number N.
    pub after: Option<u64>,
    /// `?tail=N`: the last N events (of the pipeline's slice, with a filter).
    pub tail: Option<u64>,
    /// `?pipeline=ID`: that pipeline's events only.
    pub pipeline: Option<PipelineId>,
}

impl EventsQuery {
    /// The query of decoded `key=value` pairs (a URL's query, percent-decoded).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown or repeated key, a number that is not one, or an
    /// invalid pipeline id.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut query = Self::default();
        for (key, value) in pairs {
            let (key, value) = (key.as_ref(), value.as_ref());
            let number = || {
                value.trim().parse::<u64>().map_err(|_| {
                    Error::invalid(format!("{key} must be a whole number, not {value:?}"))
                })
            };
            let repeated = match key {
                "after" => query.after.replace(number()?).is_some(),
                "tail" => query.tail.replace(number()?).is_some(),
                "pipeline" => query.pipeline.replace(PipelineId::new(value)?).is_some(),
                _ => {
                    return Err(Error::invalid(format!(
                        "unknown query parameter {key:?}; an event stream takes after, tail and pipeline"
                    )))
                }
            };
            if repeated {
                return Err(Error::invalid(format!("{key} is given more than once")));
            }
        }
        Ok(query)
    }
}

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After this sequence number (0: the whole log).
    After(u64),
    /// With the last this many events; the host finds the sequence number they follow
    /// (`CatalogExt::tail_after` computes it on any catalog). At most `Limit::MAX - 1`.
    Tail(u64),
}

/// Where a stream with `query` starts, given the `Last-Event-ID` header if the client sent one:
/// after that id; else after `?after`; else the `?tail`; else the whole log.
///
/// # Errors
/// [`Error::InvalidArgument`] if `Last-Event-ID` is not a sequence number.
pub fn start(last_event_id: Option<&str>, query: &EventsQuery) -> Result<Start> {
    if let Some(id) = last_event_id {
        return id
            .trim()
            .parse()
            .map(Start::After)
            .map_err(|_| Error::invalid("Last-Event-ID must be an event's sequence number"));
    }
    Ok(match (query.after, query.tail) {
        (Some(after), _) => Start::After(after),
        (None, Some(n)) => Start::Tail(n.min(u64::from(Limit::MAX.get()) - 1)),
        (None, None) => Start::After(0),
    })
}

/// The message of one event: `id: <seq>`, `data: <the event as compact JSON>`, a blank line.
pub fn frame(event: &Event) -> String {
    match serde_json::to_string(event) {
        // Compact JSON has no line breaks (they are escaped in strings), so one `data:` line.
        Ok(json) => format!("id: {}\ndata: {json}\n\n", event.seq),
        Err(e) => error_frame(&Error::Backend(format!(
            "cannot encode event {}: {e}",
            event.seq
        ))),
    }
}

/// The message that ends a stream on a catalog error: `event: error`, `data: <Reply::Err JSON>`.
pub fn error_frame(error: &Error) -> String {
    let data = serde_json::to_string(&Reply::Err(error.clone())).unwrap_or_else(|e| {
        // An error always encodes; this only keeps the message well-formed if it ever did not.
        serde_json::json!({"err": {"code": "backend", "message": e.to_string()}}).to_string()
    });
    format!("event: error\ndata: {data}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hakiri_core::{Actor, EventKind, OperatorName, Timestamp};

    fn query(pairs: &[(&str, &str)]) -> Result<EventsQuery> {
        EventsQuery::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn the_last_event_id_wins_then_after_then_tail_then_the_whole_log() {
        let both = query(&[("after", "3"), ("tail", "2")]).unwrap();
        assert_eq!(start(Some(" 7 "), &both).unwrap(), Start::After(7));
        assert_eq!(start(None, &both).unwrap(), Start::After(3));
        let tail = query(&[("tail", "2")]).unwrap();
        assert_eq!(start(None, &tail).unwrap(), Start::Tail(2));
        assert_eq!(start(None, &query(&[]).unwrap()).unwrap(), Start::After(0));
        let huge = query(&[("tail", &u64::MAX.to_string())]).unwrap();
        assert_eq!(
            start(None, &huge).unwrap(),
            Start::Tail(u64::from(Limit::MAX.get()) - 1)
        );
        assert!(matches!(
            start(Some("seven"), &both),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn a_query_takes_after_tail_and_pipeline_once_each_and_nothing_else() {
        let q = query(&[("pipeline", "orders"), ("after", "5")]).unwrap();
        assert_eq!(q.pipeline.as_ref().map(PipelineId::as_str), Some("orders"));
        assert_eq!((q.after, q.tail), (Some(5), None));
        for bad in [
            vec![("after", "-1")],
            vec![("tail", "x")],
            vec![("pipeline", "")],
            vec![("since", "1")],
            vec![("after", "1"), ("after", "2")],
        ] {
            assert!(
                matches!(query(&bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_event_is_one_message_with_its_seq_as_id_and_one_data_line() {
        let event = Event {
            seq: 42,
            at: Timestamp::from_millis(1_000),
            actor: Actor::Operator(OperatorName::new("ana").unwrap()),
            pipeline: PipelineId::new("orders").unwrap(),
            kind: EventKind::PipelinePaused {
                reason: hakiri_core::Reason::new("line\nbreak").unwrap(),
            },
        };
        let message = frame(&event);
        let body = message
            .strip_suffix("\n\n")
            .expect("a blank line ends the message");
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 2, "{message:?}");
        assert_eq!(lines[0], "id: 42");
        let data: Event = serde_json::from_str(lines[1].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data, event);
    }

    #[test]
    fn an_error_message_carries_the_reply() {
        let message = error_frame(&Error::Unavailable("gone".into()));
        let data = message
            .strip_prefix("event: error\ndata: ")
            .and_then(|m| m.strip_suffix("\n\n"))
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Reply>(data).unwrap(),
            Reply::Err(Error::Unavailable("gone".into()))
        );
    }
}
