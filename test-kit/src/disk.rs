//! The disk's current mode, for benchmarks of durable commits: these machines' disks switch
//! between a fast mode (an 8 KiB write + fdatasync ≈ 0.1 ms) and a slow one (≈ 4 ms) for tens of
//! seconds at a time, so every figure is printed with the mode it was measured in.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The median time of an 8 KiB write and `fdatasync`, over 20 of them, in `dir`.
///
/// # Panics
/// When `dir` cannot hold the probe file.
pub fn fdatasync_time(dir: &Path) -> Duration {
    let path = dir.join("fdatasync-probe");
    let mut file = File::create(&path).expect("the fdatasync probe file");
    let block = [7u8; 8192];
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let started = Instant::now();
            file.write_all(&block).expect("write the probe");
            file.sync_data().expect("fdatasync the probe");
            started.elapsed()
        })
        .collect();
    drop(file);
    let _ = std::fs::remove_file(path);
    times.sort();
    times[times.len() / 2]
}

/// "fast" or "slow": the mode a [`fdatasync_time`] was measured in.
pub fn mode(fdatasync: Duration) -> &'static str {
    if fdatasync < Duration::from_millis(1) {
        "fast"
    } else {
        "slow"
    }
}
