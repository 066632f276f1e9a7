//! The `hakiri` binary: everything is in the library (`src/lib.rs`), which the fuzz targets also
//! call into.

fn main() -> std::process::ExitCode {
    hakiri_cli::main()
}
