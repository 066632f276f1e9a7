//! The operator console at `/`: the static build of `console/` (`scripts/build-console`),
//! embedded in the binary when it is compiled (ADR 0027).
//!
//! - A file of the build is answered with its content type; the content-hashed files under
//!   `/_app/immutable/` are cached for a year, everything else is revalidated (ETag).
//! - Any other path that is not the API's is a page of the single-page app: `index.html`, which
//!   routes on the client. A missing file under `/_app/` is 404, never the page: a tab holding
//!   an old page would otherwise import HTML as a script after an upgrade.
//! - Without a build the console is one short page saying how to build it; the API is the same.
//!
//! The console is public (it holds no secret; the API checks the token on every call), so these
//! answers need no token and are not refused to navigations from other sites.

use axum::body::Body;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hakiri_core::Error;
use rust_embed::{EmbeddedFile, RustEmbed};

use super::ApiError;

/// The console's build, if it was built when this binary was compiled.
#[derive(RustEmbed)]
#[folder = "../console/build/"]
// Without a build the binary still compiles: Node is not needed to build or test the Rust.
#[allow_missing = true]
// The Worker's header rules (Workers Static Assets), not a file of the console.
#[exclude = "_headers"]
struct Build;

/// The page of the single-page app, answered for every page path.
const INDEX: &str = "index.html";

/// Content-hashed files: a new build has new names, so they never change.
const IMMUTABLE: &str = "_app/immutable/";

/// What the meta policy of the page cannot say: no framing (click-jacking), no plugins, no
/// `<base>`. The page's own `<meta>` policy (SvelteKit's, with its script's hash) restricts
/// scripts, styles and connections to this origin; a browser enforces both.
const POLICY: &str = "frame-ancestors 'none'; object-src 'none'; base-uri 'none'";

/// The page served when the binary was compiled without a console build.
const NOT_BUILT: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Hakiri console not built</title></head>
<body><h1>The console is not built</h1>
<p>This <code>hakiri</code> was compiled without the operator console. The API under
<code>/v1/</code> works as usual.</p>
<p>To build the console, run <code>scripts/build-console</code> in the Hakiri repository
(it needs Node 20.19 or newer and npm), then rebuild <code>hakiri</code>
(<code>cargo build -p hakiri-cli</code>).</p>
</body></html>
";

/// Whether this binary carries a console build.
pub(super) fn is_built() -> bool {
    Build::get(INDEX).is_some()
}

/// Answers a path no route matched: a console file or page, or 404 for the API's paths.
pub(super) async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if path == "/v1" || path.starts_with("/v1/") {
        return not_found(path);
    }
    if method != Method::GET && method != Method::HEAD {
        return ApiError::with_status(
            StatusCode::METHOD_NOT_ALLOWED,
            Error::invalid(format!("{path} answers GET only")),
        )
        .into_response();
    }
    let name = path.trim_start_matches('/');
    let name = if name.is_empty() { INDEX } else { name };
    if let Some(file) = Build::get(name) {
        return file_response(name, &file, &headers);
    }
    if name.starts_with("_app/") {
        return not_found(path);
    }
    match Build::get(INDEX) {
        Some(index) => file_response(INDEX, &index, &headers),
        None => with_headers(
            ([(CONTENT_TYPE, "text/html; charset=utf-8")], NOT_BUILT).into_response(),
            "no-cache",
        ),
    }
}

fn not_found(path: &str) -> Response {
    ApiError::with_status(
        StatusCode::NOT_FOUND,
        Error::invalid(format!("nothing is served at {path}")),
    )
    .into_response()
}

/// A file of the build, or 304 if the client holds this version.
fn file_response(name: &str, file: &EmbeddedFile, headers: &HeaderMap) -> Response {
    let hash = file.metadata.sha256_hash();
    let etag = format!(
        "\"{}\"",
        hash[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let cache = if name.starts_with(IMMUTABLE) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mime = file.metadata.mimetype();
        // Text is UTF-8 here (Vite writes it so); say it, so no browser guesses.
        let content_type = if mime.starts_with("text/") || mime == "application/javascript" {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_owned()
        };
        (
            [(CONTENT_TYPE, content_type)],
            Body::from(file.data.clone().into_owned()),
        )
            .into_response()
    };
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(ETAG, etag);
    }
    with_headers(response, cache)
}

fn with_headers(mut response: Response, cache: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Worker serves the same build with the headers of `console/static/_headers`: both hosts
    /// must send the same policy.
    #[test]
    fn the_workers_header_rules_match_these() {
        let rules = include_str!("../../../console/static/_headers");
        let header = |name: &str| {
            rules
                .lines()
                .filter_map(|line| line.trim().split_once(": "))
                .find_map(|(key, value)| key.eq_ignore_ascii_case(name).then_some(value))
                .unwrap_or_else(|| panic!("console/static/_headers sets no {name}"))
                .to_owned()
        };
        let response = with_headers(StatusCode::OK.into_response(), "no-cache");
        for name in [
            CONTENT_SECURITY_POLICY,
            X_CONTENT_TYPE_OPTIONS,
            REFERRER_POLICY,
        ] {
            assert_eq!(response.headers()[&name], header(name.as_str()), "{name}");
        }
        assert_eq!(
            header(CACHE_CONTROL.as_str()),
            "public, max-age=31536000, immutable"
        );
        assert!(rules.contains(&format!("/{IMMUTABLE}*")));
    }
}
