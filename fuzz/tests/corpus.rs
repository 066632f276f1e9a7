//! Every fuzz target over its seed corpus and the findings kept beside it (`corpus/<target>/`):
//! what `scripts/fuzz` explores from, replayed on every test run so that an input that once
//! found a bug keeps proving it fixed. A target without inputs fails: a corpus that went missing
//! would otherwise pass unnoticed.

use std::path::Path;

#[test]
fn every_target_passes_over_its_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, body) in hakiri_fuzz::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a corpus entry").path())
            .collect();
        inputs.sort();
        assert!(
            inputs.len() >= 5,
            "{}: {} inputs; a target's seed corpus has at least 5",
            dir.display(),
            inputs.len()
        );
        for input in &inputs {
            let data = std::fs::read(input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
            if std::panic::catch_unwind(|| body(&data)).is_err() {
                panic!("fuzz target {name} fails on {}", input.display());
            }
        }
        eprintln!("{name}: {} inputs", inputs.len());
    }
}
