//! What `hakiri apply` does with a `hakiri.toml`, callable with any bytes: the entry point of the
//! fuzz target `manifest` in `fuzz/` (and of its corpus replay). Not an API: hidden from the
//! docs and free to change with the manifest.

use hakiri_reconciler::builtin;

use crate::manifest;

/// A `hakiri.toml` of these bytes, read and validated against the built-in connectors as
/// `apply` reads it, and its error rendered as the CLI prints it (text and JSON).
pub fn manifest(bytes: &[u8]) {
    if let Err(error) = manifest::read("hakiri.toml", bytes.to_vec(), &builtin()) {
        let _ = (error.render_text(), error.render_json());
    }
}
