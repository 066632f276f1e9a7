//! [`HttpCatalog`]: the `Catalog` of one project on a catalog server (`hakiri serve`, the
//! Worker), over HTTP(S).
//!
//! One request is one `POST {base}/v1/projects/{project}/rpc` with the JSON protocol. The reply's
//! typed error is returned as is, so a `Fenced` raised by the server's store is a `Fenced` here.
//! Transport trouble becomes `Unavailable`; reads (and requests that provably never left, such as
//! refused connections) are retried with exponential backoff, writes are not: the client cannot
//! tell whether a write whose answer was lost landed. A request and its retries share one time
//! budget ([`HttpConfig::timeout`]), so the wait an error reports is the wait the caller had.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use hakiri_core::{Error, PipelineId, ProjectId, Result};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use tokio::time::Instant;

use crate::remote::{RemoteCatalog, Transport};
use crate::sse::EventFeed;
use crate::wire::{decode_reply, encode, Reply, Request, Response};

/// The catalog of one project on a catalog server that speaks the protocol over HTTP(S).
pub type HttpCatalog = RemoteCatalog<HttpTransport>;

/// Settings of the HTTP client.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    timeout: Duration,
    connect_timeout: Duration,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    client: Option<reqwest::Client>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retries: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            client: None,
        }
    }
}

impl HttpConfig {
    /// How long a request may take in all, its answer and its retries included (default 30 s):
    /// each attempt gets what is left of it, and no retry starts that could not end in time.
    ///
    /// # Warning
    /// A write that times out may still have landed: the caller gets `Unavailable` and must
    /// re-read before deciding to send it again.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long to wait for a connection (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many times a retryable failure of a read is retried (default 3; 0 disables retries).
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The first retry's delay and the cap of the exponential backoff (default 100 ms, 2 s).
    #[must_use]
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// Shares an existing client (its pool, TLS settings and proxies) instead of building one;
    /// the timeouts above then only apply per request.
    #[must_use]
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The delay before retry number `attempt` (0-based): exponential, capped, with jitter so
    /// that many clients do not retry in step.
    fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff
            .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        // Between half and all of the exponential delay.
        exp / 2 + exp.mul_f64(rand::random::<f64>() / 2.0)
    }
}

impl HttpCatalog {
    /// A catalog of `project` on the server at `base_url` (e.g. `https://hakiri.example.com`),
    /// authenticating with `token`. Connections are opened lazily and reused.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a URL that is not http(s) or a token that cannot be sent in
    /// a header; [`Error::Backend`] if the TLS client cannot be built.
    pub fn connect(
        base_url: &str,
        project: ProjectId,
        token: &str,
        config: HttpConfig,
    ) -> Result<Self> {
        let transport = HttpTransport::new(base_url, &project, token, config)?;
        Ok(RemoteCatalog::new(project, transport))
    }
}

/// Carries protocol requests to a catalog server over HTTP(S).
pub struct HttpTransport {
    client: reqwest::Client,
    endpoint: Url,
    events: Url,
    authorization: HeaderValue,
    config: HttpConfig,
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token.
        f.debug_struct("HttpTransport")
            .field("endpoint", &self.endpoint.as_str())
            .field("timeout", &self.config.timeout)
            .field("retries", &self.config.retries)
            .finish_non_exhaustive()
    }
}

/// One attempt's failure, and whether the request may have reached the server.
struct Failed {
    error: Error,
    maybe_sent: bool,
}

impl HttpTransport {
    /// A transport to `project` on the server at `base_url`.
    ///
    /// # Errors
    /// As [`HttpCatalog::connect`].
    pub fn new(
        base_url: &str,
        project: &ProjectId,
        token: &str,
        config: HttpConfig,
    ) -> Result<Self> {
        let base = Url::parse(base_url)
            .map_err(|e| Error::invalid(format!("catalog URL {base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::invalid(format!(
                "catalog URL {base_url:?} must be http:// or https://"
            )));
        }
        // Project ids are URL-safe slugs; a base URL may carry a path prefix.
        let route = |name: &str| {
            let url = format!(
                "{}/v1/projects/{project}/{name}",
                base.as_str().trim_end_matches('/')
            );
            Url::parse(&url).map_err(|e| Error::invalid(format!("catalog URL {url:?}: {e}")))
        };
        let endpoint = route("rpc")?;
        let events = route("events")?;
        if token.trim().is_empty() {
            return Err(Error::invalid("the catalog token is empty"));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| {
                Error::invalid("the catalog token contains characters that cannot go in a header")
            })?;
        authorization.set_sensitive(true);
        let client = match &config.client {
            Some(client) => client.clone(),
            None => reqwest::Client::builder()
                .connect_timeout(config.connect_timeout)
                .timeout(config.timeout)
                .pool_idle_timeout(Duration::from_secs(60))
                .tcp_keepalive(Duration::from_secs(30))
                .user_agent(concat!("hakiri-protocol/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::Backend(format!("cannot build the HTTP client: {e}")))?,
        };
        Ok(Self {
            client,
            endpoint,
            events,
            authorization,
            config,
        })
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// The project's event log after `after` (only `pipeline`'s events, if given), followed
    /// live from the server's event stream; see [`EventFeed`].
    pub fn follow(&self, after: u64, pipeline: Option<PipelineId>) -> EventFeed {
        EventFeed::new(
            self.client.clone(),
            self.events.clone(),
            self.authorization.clone(),
            after,
            pipeline,
        )
    }

    /// One attempt, given `time` to complete.
    async fn attempt(&self, body: &[u8], time: Duration) -> std::result::Result<Response, Failed> {
        let sent = self
            .client
            .post(self.endpoint.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .timeout(time)
            .body(body.to_vec())
            .send()
            .await;
        let response = sent.map_err(|e| self.transport_failure(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| Failed {
            error: Error::Unavailable(format!(
                "reading the answer of {} failed: {e}",
                self.endpoint
            )),
            maybe_sent: true,
        })?;
        if status.is_success() {
            return decode_reply(&bytes).map_err(|error| Failed {
                error,
                maybe_sent: true,
            });
        }
        Err(Failed {
            error: status_error(&self.endpoint, status, &bytes),
            maybe_sent: true,
        })
    }

    fn transport_failure(&self, e: &reqwest::Error) -> Failed {
        let endpoint = &self.endpoint;
        if e.is_connect() {
            // Nothing was sent: safe to retry any request.
            return Failed {
                error: Error::Unavailable(format!(
                    "cannot connect to the catalog at {endpoint}: {e}"
                )),
                maybe_sent: false,
            };
        }
        // An attempt times out only when the request's whole budget is spent.
        let error = if e.is_timeout() {
            Error::Unavailable(format!(
                "the catalog at {endpoint} did not answer within {:?}",
                self.config.timeout
            ))
        } else {
            Error::Unavailable(format!(
                "the request to the catalog at {endpoint} failed: {e}"
            ))
        };
        Failed {
            error,
            maybe_sent: true,
        }
    }
}

/// The error of a non-2xx answer: the typed error in its body when there is one (the
/// server always sends one), otherwise one derived from the status (a proxy's answer).
pub(crate) fn status_error(endpoint: &Url, status: StatusCode, body: &[u8]) -> Error {
    if let Ok(Reply::Err(error)) = serde_json::from_slice::<Reply>(body) {
        return error;
    }
    let text = String::from_utf8_lossy(body);
    let detail: String = text.chars().take(300).collect();
    match status {
        StatusCode::UNAUTHORIZED => Error::Unauthenticated(format!(
            "the catalog at {endpoint} refused the token (HTTP 401): {detail}"
        )),
        StatusCode::FORBIDDEN => Error::PermissionDenied(format!(
            "the catalog at {endpoint} refused the request (HTTP 403): {detail}"
        )),
        s if s.is_server_error()
            || s == StatusCode::TOO_MANY_REQUESTS
            || s == StatusCode::REQUEST_TIMEOUT =>
        {
            Error::Unavailable(format!("the catalog at {endpoint} answered {s}: {detail}"))
        }
        s => Error::Backend(format!(
            "the catalog at {endpoint} answered {s} without a catalog reply: {detail}"
        )),
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn call(&self, request: Request) -> Result<Response> {
        let body = encode(&request);
        let idempotent = request.is_idempotent();
        let deadline = Instant::now() + self.config.timeout;
        let mut attempt = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.attempt(&body, left).await {
                Ok(response) => return Ok(response),
                // Reads are retried on retryable errors (for a read, only `Unavailable` occurs);
                // writes only when they provably never left, since a lost answer may hide a
                // write that landed.
                Err(failed)
                    if failed.error.is_retryable()
                        && (idempotent || !failed.maybe_sent)
                        && attempt < self.config.retries =>
                {
                    let delay = self.config.delay(attempt);
                    if delay >= deadline.saturating_duration_since(Instant::now()) {
                        return Err(failed.error);
                    }
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(failed) => return Err(failed.error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> ProjectId {
        ProjectId::new("acme").unwrap()
    }

    #[test]
    fn endpoint_keeps_a_path_prefix() {
        let t = HttpTransport::new(
            "https://h.example/base/",
            &project(),
            "t",
            HttpConfig::default(),
        )
        .unwrap();
        assert_eq!(t.endpoint(), "https://h.example/base/v1/projects/acme/rpc");
    }

    #[test]
    fn bad_urls_and_tokens_are_invalid_arguments() {
        for url in ["ftp://h.example", "not a url", "mailto:x@y"] {
            let e = HttpTransport::new(url, &project(), "t", HttpConfig::default()).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{url}: {e}");
        }
        for token in ["", "  ", "a\nb"] {
            let e = HttpTransport::new("http://h", &project(), token, HttpConfig::default())
                .unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{token:?}: {e}");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t =
            HttpTransport::new("http://h", &project(), "s3cret", HttpConfig::default()).unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = HttpConfig::default().backoff(Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 0..40 {
            let d = c.delay(attempt);
            let exp =
                Duration::from_millis(100 * (1u64 << attempt.min(10))).min(Duration::from_secs(1));
            assert!(
                d >= exp / 2 && d <= exp,
                "attempt {attempt}: {d:?} vs {exp:?}"
            );
        }
    }

    #[test]
    fn clients_do_not_retry_in_step() {
        let c = HttpConfig::default().backoff(Duration::from_millis(100), Duration::from_secs(1));
        let delays: std::collections::BTreeSet<Duration> = (0..64).map(|_| c.delay(3)).collect();
        assert!(delays.len() > 48, "{} distinct delays of 64", delays.len());
    }

    /// A catalog URL whose server accepts connections and never answers: the caller waits the
    /// time the error names, retries included, not that time once per attempt.
    #[tokio::test]
    async fn a_server_that_never_answers_costs_the_timeout_the_error_names() {
        use hakiri_core::Catalog;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Holds every connection open without writing a byte (the thread ends with the test
        // process).
        std::thread::spawn(move || listener.incoming().collect::<Vec<_>>());
        let timeout = Duration::from_millis(400);
        let catalog = HttpCatalog::connect(
            &format!("http://127.0.0.1:{port}"),
            project(),
            "t",
            HttpConfig::default().timeout(timeout),
        )
        .unwrap();
        let started = std::time::Instant::now();
        // A read: retried on `Unavailable` (3 retries by default).
        let error = catalog
            .get_pipeline(&PipelineId::new("orders").unwrap())
            .await
            .unwrap_err();
        let waited = started.elapsed();
        assert!(
            matches!(&error, Error::Unavailable(m) if m.contains("did not answer within 400ms")),
            "{error}"
        );
        assert!(
            waited < timeout * 2,
            "waited {waited:?} where the error says {timeout:?}"
        );
    }

    #[test]
    fn status_errors_prefer_the_typed_body() {
        let t = HttpTransport::new("http://h", &project(), "t", HttpConfig::default()).unwrap();
        let status_error = |status, body: &[u8]| status_error(&t.endpoint, status, body);
        let typed = encode(&Reply::Err(Error::invalid("bad")));
        assert_eq!(
            status_error(StatusCode::BAD_REQUEST, &typed),
            Error::invalid("bad")
        );
        assert!(matches!(
            status_error(StatusCode::BAD_GATEWAY, b"<html>"),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            status_error(StatusCode::UNAUTHORIZED, b""),
            Error::Unauthenticated(m) if m.contains("401")
        ));
        assert!(matches!(
            status_error(StatusCode::IM_A_TEAPOT, b""),
            Error::Backend(_)
        ));
    }
}
