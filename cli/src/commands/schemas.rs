//! `hakiri schemas versions|show|diff`.

use hakiri_core::schema::diff;
use hakiri_core::{ChangeClass, SchemaDiff, SchemaVersion};
use serde::Serialize;

use super::{pipeline_id, stream_name, Ctx};
use crate::cli::SchemasCommand;
use crate::error::{CliError, CliResult};
use crate::output;
use crate::target::Access;

pub(super) async fn run(ctx: &Ctx, command: SchemasCommand) -> CliResult {
    let catalog = ctx.open(Access::Existing).await?.catalog;
    match command {
        SchemasCommand::Versions { pipeline, stream } => {
            let id = pipeline_id(&pipeline)?;
            let stream = stream_name(&stream)?;
            let versions = catalog.list_schema_versions(&id, &stream).await?;
            output::emit(ctx.format(), &versions, || {
                let mut table = output::table([
                    "VERSION",
                    "COLUMNS",
                    "KEY",
                    "FINGERPRINT",
                    "DECISION",
                    "RUN",
                    "CREATED",
                ]);
                for v in &versions {
                    table.add_row([
                        v.version.to_string(),
                        v.schema.columns().len().to_string(),
                        v.schema.key().join(", "),
                        v.fingerprint.as_str().chars().take(12).collect(),
                        v.decision.map_or_else(|| "-".to_owned(), |d| d.to_string()),
                        v.run.map_or_else(|| "-".to_owned(), |r| r.to_string()),
                        output::time(v.created_at),
                    ]);
                }
                output::print_table(
                    &table,
                    &format!("{id}/{stream} has no schema yet (no run has observed it)"),
                );
            });
        }
        SchemasCommand::Show {
            pipeline,
            stream,
            version,
        } => {
            let id = pipeline_id(&pipeline)?;
            let stream = stream_name(&stream)?;
            let v = catalog.get_schema(&id, &stream, version).await?;
            output::emit(ctx.format(), &v, || {
                output::line(format!(
                    "{id}/{stream} schema version {} (fingerprint {})",
                    v.version, v.fingerprint
                ));
                let mut table = output::table(["COLUMN", "TYPE", "NULLABLE", "KEY"]);
                for c in v.schema.columns() {
                    let key = v.schema.key().contains(&c.name);
                    table.add_row([
                        c.name.clone(),
                        c.ty.to_string(),
                        if c.nullable { "yes" } else { "no" }.to_owned(),
                        if key { "yes" } else { "" }.to_owned(),
                    ]);
                }
                output::print_table(&table, "no columns");
            });
        }
        SchemasCommand::Diff {
            pipeline,
            stream,
            from,
            to,
        } => {
            let id = pipeline_id(&pipeline)?;
            let stream = stream_name(&stream)?;
            let newer = catalog.get_schema(&id, &stream, to).await?;
            let from = match from {
                Some(v) => v,
                None if newer.version > 1 => newer.version - 1,
                None => {
                    return Err(CliError::invalid(
                        "invalid_argument",
                        format!(
                            "{id}/{stream} has only version 1; there is nothing to diff it with"
                        ),
                    )
                    .hint(format!("see `hakiri schemas versions {id} {stream}`")))
                }
            };
            let older = catalog.get_schema(&id, &stream, Some(from)).await?;
            let report = DiffReport::new(&older, &newer);
            output::emit(ctx.format(), &report, || print_diff(&report));
        }
    }
    Ok(())
}

/// What `schemas diff` prints.
#[derive(Serialize)]
struct DiffReport {
    from: u32,
    to: u32,
    class: Option<ChangeClass>,
    diff: SchemaDiff,
}

impl DiffReport {
    fn new(older: &SchemaVersion, newer: &SchemaVersion) -> Self {
        let d = diff(&older.schema, &newer.schema);
        Self {
            from: older.version,
            to: newer.version,
            class: d.classify(),
            diff: d,
        }
    }
}

fn print_diff(r: &DiffReport) {
    let Some(class) = r.class else {
        output::line(format!("versions {} and {} are the same", r.from, r.to));
        return;
    };
    output::line(format!("version {} → {}: {class} change", r.from, r.to));
    let mut table = output::table(["CHANGE", "COLUMN", "FROM", "TO"]);
    for c in &r.diff.added {
        table.add_row([
            "added".to_owned(),
            c.name.clone(),
            "-".to_owned(),
            column_type(c.ty, c.nullable),
        ]);
    }
    for c in &r.diff.removed {
        table.add_row([
            "removed".to_owned(),
            c.name.clone(),
            column_type(c.ty, c.nullable),
            "-".to_owned(),
        ]);
    }
    for c in &r.diff.retyped {
        table.add_row([
            "retyped".to_owned(),
            c.column.clone(),
            c.from.to_string(),
            c.to.to_string(),
        ]);
    }
    for c in &r.diff.nullability {
        let word = |nullable: bool| if nullable { "nullable" } else { "required" }.to_owned();
        table.add_row([
            "nullability".to_owned(),
            c.column.clone(),
            word(c.from),
            word(c.to),
        ]);
    }
    if let Some(key) = &r.diff.key {
        table.add_row([
            "key".to_owned(),
            "-".to_owned(),
            key.from.join(", "),
            key.to.join(", "),
        ]);
    }
    output::print_table(&table, "");
}

fn column_type(ty: hakiri_core::ColumnType, nullable: bool) -> String {
    if nullable {
        format!("{ty} (nullable)")
    } else {
        ty.to_string()
    }
}

/// A one-line summary of a diff: `+email, ~amount: integer→string, -legacy`.
pub(crate) fn summary(d: &SchemaDiff) -> String {
    let mut parts: Vec<String> = Vec::new();
    parts.extend(d.added.iter().map(|c| format!("+{}", c.name)));
    parts.extend(d.removed.iter().map(|c| format!("-{}", c.name)));
    parts.extend(
        d.retyped
            .iter()
            .map(|c| format!("~{}: {}→{}", c.column, c.from, c.to)),
    );
    parts.extend(d.nullability.iter().map(|c| {
        format!(
            "~{}: {}",
            c.column,
            if c.to { "nullable" } else { "required" }
        )
    }));
    if d.key.is_some() {
        parts.push("key changed".to_owned());
    }
    parts.join(", ")
}
