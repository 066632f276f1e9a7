//! `hakiri apply`: make the catalog's pipelines match a `hakiri.toml`.
//!
//! The whole file is validated before anything is written. Each change is a compare-and-set on
//! the generation that was read, so a concurrent edit is a conflict, never a lost update.

use std::collections::{BTreeMap, BTreeSet};

use hakiri_core::{CatalogExt, Error, Generation, Pipeline, PipelineId, PipelineSpec, PutMode};
use serde::Serialize;
use serde_json::Value;

use super::Ctx;
use crate::cli::ApplyArgs;
use crate::commands::reconcile::{connectors, known_connectors};
use crate::error::{CliError, CliResult};
use crate::manifest;
use crate::output;
use crate::target::Access;

/// What apply does (or did) to one pipeline.
#[derive(Debug, Clone, Serialize)]
struct Change {
    pipeline: PipelineId,
    change: ChangeKind,
    /// The generation before the change (none for a creation).
    from_generation: Option<Generation>,
    /// The generation after it (none for a deletion, or before a dry run's write).
    generation: Option<Generation>,
    /// For an update: every field that changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    diff: Vec<FieldChange>,
    #[serde(skip)]
    spec: Option<PipelineSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum ChangeKind {
    Created,
    Updated,
    Unchanged,
    Deleted,
}

/// One field of a spec that differs, by its dotted path (`schedule.every`, `config.input`).
#[derive(Debug, Clone, PartialEq, Serialize)]
struct FieldChange {
    field: String,
    from: Option<Value>,
    to: Option<Value>,
}

pub(super) async fn run(ctx: &Ctx, args: &ApplyArgs) -> CliResult {
    let specs = manifest::load(&args.file, &connectors())?;
    let file = args.file.display().to_string();
    let by = ctx.operator()?;

    // A dry run writes nothing, not even an empty catalog file.
    let access = if args.dry_run {
        Access::Existing
    } else {
        Access::CreateIfMissing
    };
    let existing: BTreeMap<PipelineId, Pipeline> = match ctx.open(access).await {
        Ok(opened) => opened
            .catalog
            .all_pipelines()
            .await?
            .into_iter()
            .map(|p| (p.id().clone(), p))
            .collect(),
        Err(e) if args.dry_run && e.code() == "no_catalog" => BTreeMap::new(),
        Err(e) => return Err(e),
    };

    let mut changes = plan_changes(&specs, &existing, args.prune);
    let deletions: Vec<&PipelineId> = changes
        .iter()
        .filter(|c| c.change == ChangeKind::Deleted)
        .map(|c| &c.pipeline)
        .collect();
    if !deletions.is_empty() && !args.yes && !args.dry_run {
        let names: Vec<String> = deletions.iter().map(ToString::to_string).collect();
        return Err(CliError::invalid(
            "confirm",
            format!(
                "--prune would delete {} pipeline(s) not declared in {file}: {} (with their runs, cursors and schemas)",
                names.len(),
                names.join(", ")
            ),
        )
        .hint("nothing was applied; add --yes to confirm, or --dry-run to review every change first"));
    }

    let known = known_connectors();
    for spec in &specs {
        if !known.contains(&spec.connector.as_str().to_owned()) {
            output::note(format!(
                "warning: pipeline {}: connector {:?} is not built into this hakiri (it has: {}); its runs will fail",
                spec.id,
                spec.connector.as_str(),
                known.join(", ")
            ));
        }
    }

    if !args.dry_run {
        let opened = ctx.open(Access::CreateIfMissing).await?;
        let catalog = opened.catalog;
        for (done, change) in changes.iter_mut().enumerate() {
            let result = match (change.change, change.spec.clone(), change.from_generation) {
                (ChangeKind::Created, Some(spec), _) => catalog
                    .put_pipeline(spec, PutMode::Create, &by)
                    .await
                    .map(|p| change.generation = Some(p.generation)),
                (ChangeKind::Updated, Some(spec), Some(expected)) => catalog
                    .put_pipeline(spec, PutMode::Update { expected }, &by)
                    .await
                    .map(|p| change.generation = Some(p.generation)),
                (ChangeKind::Deleted, _, Some(expected)) => {
                    catalog
                        .delete_pipeline(&change.pipeline, expected, &by)
                        .await
                }
                _ => continue,
            };
            if let Err(error) = result {
                let applied = &changes[..done];
                return Err(apply_failed(ctx, &file, applied, &changes[done], error));
            }
        }
    }

    print(ctx, &changes, args.dry_run, &file);
    Ok(())
}

/// Compares the file with the catalog: one change per declared pipeline (in file order), then a
/// deletion per undeclared one when pruning.
fn plan_changes(
    specs: &[PipelineSpec],
    existing: &BTreeMap<PipelineId, Pipeline>,
    prune: bool,
) -> Vec<Change> {
    let mut changes: Vec<Change> = specs
        .iter()
        .map(|spec| match existing.get(&spec.id) {
            None => Change {
                pipeline: spec.id.clone(),
                change: ChangeKind::Created,
                from_generation: None,
                generation: None,
                diff: Vec::new(),
                spec: Some(spec.clone()),
            },
            Some(current) if current.spec == *spec => Change {
                pipeline: spec.id.clone(),
                change: ChangeKind::Unchanged,
                from_generation: Some(current.generation),
                generation: Some(current.generation),
                diff: Vec::new(),
                spec: None,
            },
            Some(current) => Change {
                pipeline: spec.id.clone(),
                change: ChangeKind::Updated,
                from_generation: Some(current.generation),
                generation: None,
                diff: spec_diff(&current.spec, spec),
                spec: Some(spec.clone()),
            },
        })
        .collect();
    if prune {
        let declared: BTreeSet<&PipelineId> = specs.iter().map(|s| &s.id).collect();
        changes.extend(
            existing
                .values()
                .filter(|p| !declared.contains(p.id()))
                .map(|p| Change {
                    pipeline: p.id().clone(),
                    change: ChangeKind::Deleted,
                    from_generation: Some(p.generation),
                    generation: None,
                    diff: Vec::new(),
                    spec: None,
                }),
        );
    }
    changes
}

/// Every field that differs between two specs, by dotted path, in path order.
fn spec_diff(old: &PipelineSpec, new: &PipelineSpec) -> Vec<FieldChange> {
    let mut old_fields = BTreeMap::new();
    let mut new_fields = BTreeMap::new();
    flatten(
        "",
        &serde_json::to_value(old).unwrap_or(Value::Null),
        &mut old_fields,
    );
    flatten(
        "",
        &serde_json::to_value(new).unwrap_or(Value::Null),
        &mut new_fields,
    );
    let paths: BTreeSet<&String> = old_fields.keys().chain(new_fields.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let from = old_fields.get(path).cloned();
            let to = new_fields.get(path).cloned();
            (from != to).then(|| FieldChange {
                field: path.clone(),
                from,
                to,
            })
        })
        .collect()
}

/// Flattens objects into dotted paths; arrays and scalars are leaves.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

fn apply_failed(
    ctx: &Ctx,
    file: &str,
    applied: &[Change],
    failed: &Change,
    error: Error,
) -> CliError {
    let written: Vec<String> = applied
        .iter()
        .filter(|c| c.change != ChangeKind::Unchanged)
        .map(|c| format!("{} {}", kind_word(c.change), c.pipeline))
        .collect();
    if !written.is_empty() && !ctx.json() {
        output::note(format!(
            "applied before the failure: {}",
            written.join(", ")
        ));
    }
    let hint = match &error {
        Error::Conflict { .. } | Error::AlreadyExists(_) | Error::NotFound(_) => format!(
            "pipeline {} changed while apply ran; run `hakiri apply -f {file}` again to see and apply the new difference",
            failed.pipeline
        ),
        Error::Leased { holder, expires_at, .. } => format!(
            "{holder} is running {} (lease until {expires_at}); pause it, wait for the run to end, then apply again",
            failed.pipeline
        ),
        _ => format!(
            "the changes listed above were applied, the rest were not; fix the cause and run `hakiri apply -f {file}` again (it is idempotent)"
        ),
    };
    let message = format!(
        "could not apply {} {}: {error}",
        kind_word(failed.change),
        failed.pipeline
    );
    let mut e = CliError::from(error);
    e = e.replace_hint(hint);
    e.with_message(message)
}

fn kind_word(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Created => "create",
        ChangeKind::Updated => "update",
        ChangeKind::Unchanged => "keep",
        ChangeKind::Deleted => "delete",
    }
}

fn print(ctx: &Ctx, changes: &[Change], dry_run: bool, file: &str) {
    let count = |kind| changes.iter().filter(|c| c.change == kind).count();
    let summary = serde_json::json!({
        "created": count(ChangeKind::Created),
        "updated": count(ChangeKind::Updated),
        "unchanged": count(ChangeKind::Unchanged),
        "deleted": count(ChangeKind::Deleted),
    });
    let body = serde_json::json!({
        "file": file,
        "dry_run": dry_run,
        "changes": changes,
        "summary": summary,
    });
    output::emit(ctx.format(), &body, || {
        let verb = |kind: ChangeKind| match (kind, dry_run) {
            (ChangeKind::Created, false) => "created",
            (ChangeKind::Created, true) => "would create",
            (ChangeKind::Updated, false) => "updated",
            (ChangeKind::Updated, true) => "would update",
            (ChangeKind::Unchanged, _) => "unchanged",
            (ChangeKind::Deleted, false) => "deleted",
            (ChangeKind::Deleted, true) => "would delete",
        };
        for change in changes {
            let generation = match (change.change, change.from_generation, change.generation) {
                (ChangeKind::Created, _, Some(g)) => format!("generation {g}"),
                (ChangeKind::Updated, Some(from), Some(to)) => format!("generation {from} → {to}"),
                (ChangeKind::Updated, Some(from), None) => {
                    format!("generation {from} → {}", from.next())
                }
                (ChangeKind::Unchanged, Some(g), _) => format!("generation {g}"),
                (ChangeKind::Deleted, Some(g), _) => format!("was generation {g}; not in {file}"),
                _ => String::new(),
            };
            output::line(format!(
                "{:<14} {:<24} {generation}",
                verb(change.change),
                change.pipeline.as_str()
            ));
            for field in &change.diff {
                output::line(format!(
                    "    {}: {} → {}",
                    field.field,
                    show(field.from.as_ref()),
                    show(field.to.as_ref())
                ));
            }
        }
        let s = &summary;
        output::line(format!(
            "{}{} created, {} updated, {} unchanged, {} deleted",
            if dry_run {
                "dry run (nothing written): "
            } else {
                "apply: "
            },
            s["created"],
            s["updated"],
            s["unchanged"],
            s["deleted"]
        ));
    });
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "(unset)".to_owned(), Value::to_string)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hakiri_core::{ConnectorRef, CursorKind, Schedule, Timestamp};

    use super::*;

    fn spec(id: &str) -> PipelineSpec {
        PipelineSpec::new(
            PipelineId::new(id).unwrap(),
            ConnectorRef::new("jsonl").unwrap(),
            CursorKind::Monotonic,
        )
    }

    fn stored(spec: PipelineSpec, generation: u64) -> Pipeline {
        Pipeline {
            spec,
            generation: Generation(generation),
            paused: None,
            created_at: Timestamp::EPOCH,
            updated_at: Timestamp::EPOCH,
            requested: None,
        }
    }

    #[test]
    fn changes_are_created_updated_unchanged_or_pruned() {
        let existing: BTreeMap<PipelineId, Pipeline> = [
            stored(spec("same"), 2),
            stored(spec("edited"), 5),
            stored(spec("gone"), 1),
        ]
        .into_iter()
        .map(|p| (p.id().clone(), p))
        .collect();
        let edited = spec("edited").with_schedule(Schedule::Interval(Duration::from_secs(300)));
        let file = vec![spec("new"), spec("same"), edited];

        let changes = plan_changes(&file, &existing, false);
        let kinds: Vec<ChangeKind> = changes.iter().map(|c| c.change).collect();
        assert_eq!(
            kinds,
            [
                ChangeKind::Created,
                ChangeKind::Unchanged,
                ChangeKind::Updated
            ]
        );
        assert_eq!(changes[2].from_generation, Some(Generation(5)));
        assert_eq!(
            changes[2].diff,
            vec![
                FieldChange {
                    field: "schedule".into(),
                    from: Some(Value::from("manual")),
                    to: None
                },
                FieldChange {
                    field: "schedule.every".into(),
                    from: None,
                    to: Some(Value::from("5m"))
                },
            ]
        );

        let pruned = plan_changes(&file, &existing, true);
        assert_eq!(pruned.len(), 4);
        assert_eq!(pruned[3].change, ChangeKind::Deleted);
        assert_eq!(pruned[3].pipeline.as_str(), "gone");
    }
}
