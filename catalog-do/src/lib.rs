//! Hakiri's SQLite catalog, one implementation for two hosts:
//!
//! - **Cloudflare**: a Durable Object per project on SQLite storage, behind a Worker that routes
//!   `/v1/projects/{project}/…`, checks bearer tokens against its grants, and speaks the JSON
//!   protocol of `hakiri-protocol` (`cfg(target_arch = "wasm32")`); `hakiri_protocol::HttpCatalog`
//!   is its native client.
//! - **Embedded**: the same store on a local file through rusqlite — the CLI's default
//!   ([`SqliteCatalog`]).
//!
//! Both run exactly the statements in [`store`], each operation inside one atomic unit.
//!
//! # Layout
//! - [`store`]: the schema (embedded migrations) and every statement, over a synchronous `Exec`;
//!   [`store::handle`] answers one protocol request.
//! - `embedded` (native): rusqlite host, one writer thread, group commit.
//! - `worker` (wasm32, feature `worker`, on by default): the Worker and its `#[durable_object]`
//!   class, `HakiriCatalog`.

pub mod store;

#[cfg(not(target_arch = "wasm32"))]
mod embedded;

#[cfg(all(target_arch = "wasm32", feature = "worker"))]
mod worker;
#[cfg(all(target_arch = "wasm32", feature = "worker"))]
pub use worker::HakiriCatalog;

#[cfg(not(target_arch = "wasm32"))]
pub use embedded::{Durability, EmbeddedTransport, SqliteCatalog, SqliteConfig, SqliteConnection};

// Compiles the README's Rust examples (they use this crate, the protocol crate and the memory
// backend), so the README cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
