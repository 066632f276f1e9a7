//! Recompiles the CLI when the operator console's static build changes: `hakiri serve` embeds
//! `console/build` at compile time (`src/serve/console.rs`), and a derive cannot tell cargo about
//! files added to or removed from a folder.

fn main() {
    let build = std::path::Path::new("../console/build");
    if build.exists() {
        println!("cargo:rerun-if-changed=../console/build");
    } else {
        // Watching a path that does not exist would rebuild every time; the folder that will
        // hold it changes when it appears.
        println!("cargo:rerun-if-changed=../console");
    }
}
