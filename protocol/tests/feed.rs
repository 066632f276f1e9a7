//! `EventFeed` against a server that misbehaves on purpose: keep-alives, an event kind it does
//! not know, a repeated event, a stream that ends, an error event, a refused token, no server.
//! (The feed on `hakiri serve` itself, across a restart: the CLI's `serve` tests.)
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use hakiri_catalog_memory::MemoryCatalog;
use hakiri_core::{
    Actor, Catalog, CatalogExt, ConnectorRef, CursorKind, Error, Event, Limit, PipelineId,
    PipelineSpec, ProjectId,
};
use hakiri_protocol::{encode, HttpConfig, HttpTransport, Reply};

/// Two events of a real log, as a server sends them.
async fn two_events() -> Vec<Event> {
    let catalog = MemoryCatalog::new(ProjectId::new("acme").unwrap());
    for id in ["orders", "users"] {
        let spec = PipelineSpec::new(
            PipelineId::new(id).unwrap(),
            ConnectorRef::new("jsonl").unwrap(),
            CursorKind::Monotonic,
        );
        catalog.create_pipeline(spec, &Actor::System).await.unwrap();
    }
    catalog.events(0, Limit::MAX).await.unwrap()
}

fn message(event: &Event) -> String {
    format!(
        "id: {}\ndata: {}\n\n",
        event.seq,
        serde_json::to_string(event).unwrap()
    )
}

/// A server that answers its n-th connection with `answers[n]` (status line and headers
/// included) and then closes it; the request lines it got come out of the receiver.
fn server(answers: Vec<String>) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (requests, received) = mpsc::channel();
    std::thread::spawn(move || {
        for (answer, stream) in answers.into_iter().zip(listener.incoming()) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            requests.send(line.trim_end().to_owned()).unwrap();
            while line != "\r\n" {
                line.clear();
                reader.read_line(&mut line).unwrap();
            }
            stream.write_all(answer.as_bytes()).unwrap();
        }
    });
    (url, received)
}

fn stream(body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n{body}")
}

#[tokio::test]
async fn the_feed_skips_repeats_and_unknown_kinds_resumes_where_it_was_and_types_refusals() {
    let events = two_events().await;
    let refusal = encode(&Reply::Err(Error::PermissionDenied("not yours".into())));
    let unknown_token = encode(&Reply::Err(Error::Unauthenticated("who?".into())));
    let (url, requests) = server(vec![
        // Keep-alives, an event kind from a later server, and the first event twice.
        stream(&format!(
            ": keep-alive\n\n{}event: novel\ndata: {{}}\n\n{}{}",
            message(&events[0]),
            message(&events[0]),
            message(&events[1]),
        )),
        // After a reconnection: the server's error event, which ends the stream.
        stream(&format!("event: error\ndata: {}\n\n", String::from_utf8(refusal).unwrap())),
        format!(
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            unknown_token.len(),
            String::from_utf8(unknown_token).unwrap()
        ),
    ]);
    let project = ProjectId::new("acme").unwrap();
    let transport = HttpTransport::new(&url, &project, "t", HttpConfig::default()).unwrap();
    let orders = PipelineId::new("orders").unwrap();
    let mut feed = transport.follow(0, Some(orders));

    assert_eq!(feed.next().await.unwrap(), events[0]);
    assert_eq!(
        feed.next().await.unwrap(),
        events[1],
        "the repeat is skipped"
    );
    assert_eq!(feed.after(), events[1].seq);
    assert_eq!(
        requests.recv().unwrap(),
        "GET /v1/projects/acme/events?after=0&pipeline=orders HTTP/1.1"
    );
    // The first stream ends: the feed reconnects after what it gave, and gets the refusal.
    assert_eq!(
        feed.next().await.unwrap_err(),
        Error::PermissionDenied("not yours".into())
    );
    assert_eq!(
        requests.recv().unwrap(),
        format!(
            "GET /v1/projects/acme/events?after={}&pipeline=orders HTTP/1.1",
            events[1].seq
        )
    );
    assert_eq!(
        feed.next().await.unwrap_err(),
        Error::Unauthenticated("who?".into())
    );
    // Nobody listens any more: transport trouble, which the caller may wait out.
    assert!(matches!(
        feed.next().await.unwrap_err(),
        Error::Unavailable(_)
    ));
}
