//! `Reply` bodies and their HTTP statuses: the body is the contract, the status a summary of it
//! for proxies, logs and clients that only look at the status line.

use hakiri_protocol::{encode, status_of, Reply};
use serde::Serialize;
use worker::{Headers, Response};

/// A JSON response carrying `reply`; `status` overrides the one derived from the reply.
pub(crate) fn reply(reply: &Reply, status: Option<u16>) -> worker::Result<Response> {
    let status = status.unwrap_or(match reply {
        Reply::Ok(_) => 200,
        Reply::Err(error) => status_of(error),
    });
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    if status == 401 {
        headers.set("www-authenticate", "Bearer realm=\"hakiri\"")?;
    }
    Ok(Response::from_bytes(encode(reply))?
        .with_status(status)
        .with_headers(headers))
}

/// A 200 JSON response carrying `value` (an answer that is not a catalog `Reply`, e.g. `whoami`).
pub(crate) fn json<T: Serialize>(value: &T) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::from_bytes(encode(value))?.with_headers(headers))
}
