//! Hakiri's SQLite catalog, one implementation for two hosts:
//!
//! - **Cloudflare**: a Durable Object per project on SQLite storage, behind a Worker that routes
//!   `/v1/projects/{project}/…`, checks bearer tokens, and speaks the JSON [`protocol`]
//!   (`cfg(target_arch = "wasm32")`); [`DoCatalog`] is the native client.
//! - **Embedded**: the same store on a local file through rusqlite — the CLI's default
//!   ([`SqliteCatalog`]).
//!
//! Both run exactly the statements in [`store`], each operation inside one atomic unit.
//!
//! # Layout
//! - [`protocol`]: requests, responses and errors on the wire.
//! - [`store`]: the schema (embedded migrations) and every statement, over a synchronous `Exec`.
//! - `remote`: the `Catalog` implementation shared by every client of the protocol.
//! - `embedded` (native): rusqlite host, one writer thread, group commit.
//! - `client` (native): [`DoCatalog`], the HTTP client of the deployed Worker.
//! - `worker` (wasm32, feature `worker`, on by default): the Worker and its `#[durable_object]`
//!   class, `HakiriCatalog`.

pub mod protocol;
pub mod store;

#[cfg(not(target_arch = "wasm32"))]
mod client;
#[cfg(not(target_arch = "wasm32"))]
mod embedded;
#[cfg(not(target_arch = "wasm32"))]
mod remote;

#[cfg(all(target_arch = "wasm32", feature = "worker"))]
mod worker;
#[cfg(all(target_arch = "wasm32", feature = "worker"))]
pub use worker::HakiriCatalog;

#[cfg(not(target_arch = "wasm32"))]
pub use client::{DoCatalog, DoConfig, HttpTransport};
#[cfg(not(target_arch = "wasm32"))]
pub use embedded::{Durability, EmbeddedTransport, SqliteCatalog, SqliteConfig, SqliteConnection};
#[cfg(not(target_arch = "wasm32"))]
pub use remote::{RemoteCatalog, Transport};

// Compiles the README's Rust examples (they use this crate and the memory backend), so the README
// cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
