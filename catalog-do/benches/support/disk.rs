//! The disk's current mode, for benchmarks of durable commits: these machines' disks switch
//! between a fast mode (an 8 KiB write + fdatasync ≈ 0.1 ms) and a slow one (≈ 4 ms) for tens of
//! seconds at a time, so every figure is printed with the mode it was measured in.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The mean latency of 20 × (8 KiB write + fdatasync) in `dir`.
pub(crate) fn fsync_latency(dir: &Path) -> Duration {
    let path = dir.join("fsync-probe");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .expect("probe file");
    let block = [7u8; 8192];
    let start = Instant::now();
    for _ in 0..20 {
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
    }
    start.elapsed() / 20
}

/// "fast" or "slow".
pub(crate) fn mode(latency: Duration) -> &'static str {
    if latency < Duration::from_millis(1) {
        "fast"
    } else {
        "slow"
    }
}
