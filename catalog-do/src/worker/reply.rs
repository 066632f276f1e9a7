//! `Reply` bodies and their HTTP statuses: the body is the contract, the status a summary of it
//! for proxies, logs and clients that only look at the status line.

use worker::{Headers, Response};

use crate::protocol::{encode, status_of, Reply};

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
