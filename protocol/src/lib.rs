//! Hakiri's catalog protocol, which belongs to no single backend: one JSON [`Request`] per
//! `Catalog` method and one [`Reply`] per answer; the `Catalog` over any [`Transport`]
//! ([`RemoteCatalog`]) and its HTTP client ([`HttpCatalog`]); the generic [`dispatch()`] that
//! answers every request on any `Catalog`; and the grants ([`Grants`]) that decide who may send
//! which request, and as whom it is audited (ADR 0023, `docs/adr/0023-protocol-crate.md`).
//!
//! The Cloudflare Worker (`hakiri-catalog-do`) authenticates with [`Grants`] and forwards
//! requests to its Durable Object, whose SQL store answers them; the embedded SQLite host is a
//! [`RemoteCatalog`] over a channel to its writer thread. Everything here but the HTTP client
//! builds for `wasm32-unknown-unknown`.
//!
//! # Layout
//! - `wire`: requests, responses, replies, their encoding, and which access each request needs.
//! - `remote`: [`RemoteCatalog`], the one `Catalog` implementation for every protocol client.
//! - `dispatch`: [`dispatch()`], a request answered through any `Catalog` as the Worker would.
//! - [`events`]: the event stream both hosts serve (`GET /v1/projects/{p}/events`): its query,
//!   where it starts, and its Server-Sent Events framing.
//! - `auth`: the grants file, roles ([`Access`]), the constant-time token check, `whoami`, and
//!   stamping the audited actor from the token's grant ([`Request::stamped_by`]).
//! - `http` (native): [`HttpCatalog`], [`HttpConfig`], [`HttpTransport`]: the client of a catalog
//!   server (`hakiri serve`, the Worker).
//! - `sse` (native): [`EventFeed`], a project's event log followed live from a server.

mod auth;
mod dispatch;
pub mod events;
#[cfg(not(target_arch = "wasm32"))]
mod http;
mod remote;
#[cfg(not(target_arch = "wasm32"))]
mod sse;
mod wire;

pub use auth::{
    bearer, Access, Backend, Grant, GrantInfo, Grants, GrantsError, ParsedGrants, Scope, Server,
    WhoAmI,
};
pub use dispatch::dispatch;
#[cfg(not(target_arch = "wasm32"))]
pub use http::{HttpCatalog, HttpConfig, HttpTransport};
pub use remote::{RemoteCatalog, Transport};
#[cfg(not(target_arch = "wasm32"))]
pub use sse::EventFeed;
pub use wire::{
    decode_reply, decode_request, encode, status_of, ttl_ms, Reply, Request, Response, VERSION,
};
