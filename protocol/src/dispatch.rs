//! [`dispatch`]: a protocol request answered through any `Catalog`, with the response variant
//! and the errors the Worker's store would give — the server side of the protocol for every
//! backend (memory, SQLite, Postgres), as [`RemoteCatalog`](crate::RemoteCatalog) is its client.

use std::time::Duration;

use hakiri_core::{Catalog, Result};

use crate::wire::{Request, Response};

/// Answers `request` by calling the one `Catalog` method it names on `catalog`.
///
/// Authentication, authorisation ([`Request::access`]) and stamping the operator
/// ([`Request::stamped_by`]) are the caller's: by the time a request gets here it is one the
/// caller may send, as the actor it will be audited as.
///
/// # Errors
/// Exactly the error of the catalog method, unchanged, so that the client sees the backend's
/// typed error (`Fenced` stays `Fenced`).
pub async fn dispatch(catalog: &dyn Catalog, request: Request) -> Result<Response> {
    use Request as R;
    let ttl = Duration::from_millis;
    Ok(match request {
        R::PutPipeline { spec, mode, by } => {
            Response::Pipeline(catalog.put_pipeline(spec, mode, &by).await?)
        }
        R::GetPipeline { pipeline } => Response::Pipeline(catalog.get_pipeline(&pipeline).await?),
        R::ListPipelines { after, limit } => {
            Response::Pipelines(catalog.list_pipelines(after.as_ref(), limit).await?)
        }
        R::SetPaused {
            pipeline,
            change,
            by,
        } => Response::Pipeline(catalog.set_paused(&pipeline, change, &by).await?),
        R::DeletePipeline {
            pipeline,
            expected,
            by,
        } => {
            catalog.delete_pipeline(&pipeline, expected, &by).await?;
            Response::Unit
        }
        R::RequestRun {
            pipeline,
            trigger,
            by,
        } => Response::Pipeline(catalog.request_run(&pipeline, trigger, &by).await?),
        R::Acquire {
            pipeline,
            holder,
            ttl_ms,
        } => Response::Lease(catalog.acquire(&pipeline, &holder, ttl(ttl_ms)).await?),
        R::ForceAcquire {
            pipeline,
            holder,
            ttl_ms,
            by,
            reason,
        } => Response::Lease(
            catalog
                .force_acquire(&pipeline, &holder, ttl(ttl_ms), &by, &reason)
                .await?,
        ),
        R::Renew { lease, ttl_ms } => Response::Lease(catalog.renew(&lease, ttl(ttl_ms)).await?),
        R::Release { lease } => {
            catalog.release(&lease).await?;
            Response::Unit
        }
        R::BeginRun { lease, begin } => Response::Run(catalog.begin_run(&lease, begin).await?),
        R::Advance {
            lease,
            run,
            stream,
            advance,
        } => Response::Cursor(catalog.advance(&lease, run, &stream, advance).await?),
        R::FinishRun { lease, run, finish } => {
            Response::Run(catalog.finish_run(&lease, run, finish).await?)
        }
        R::GetRun { run } => Response::Run(catalog.get_run(run).await?),
        R::ListRuns { query } => Response::Runs(catalog.list_runs(&query).await?),
        R::GetCursor { pipeline, stream } => {
            Response::MaybeCursor(catalog.get_cursor(&pipeline, &stream).await?)
        }
        R::ListCursors { pipeline } => Response::Cursors(catalog.list_cursors(&pipeline).await?),
        R::CursorHistory {
            pipeline,
            stream,
            before,
            limit,
        } => Response::CursorHistory(
            catalog
                .cursor_history(&pipeline, &stream, before, limit)
                .await?,
        ),
        R::ResetCursor {
            lease,
            stream,
            reset,
        } => Response::Cursor(catalog.reset_cursor(&lease, &stream, reset).await?),
        R::ObserveSchema {
            lease,
            run,
            stream,
            schema,
        } => Response::Observation(catalog.observe_schema(&lease, run, &stream, schema).await?),
        R::GetSchema {
            pipeline,
            stream,
            version,
        } => Response::SchemaVersion(catalog.get_schema(&pipeline, &stream, version).await?),
        R::ListSchemaVersions { pipeline, stream } => {
            Response::SchemaVersions(catalog.list_schema_versions(&pipeline, &stream).await?)
        }
        R::ListDecisions { query } => Response::Decisions(catalog.list_decisions(&query).await?),
        R::Decide { decision, decide } => {
            Response::Decision(catalog.decide(decision, decide).await?)
        }
        R::PipelineStatuses { after, limit } => {
            Response::Statuses(catalog.pipeline_statuses(after.as_ref(), limit).await?)
        }
        R::Events { after, limit } => Response::Events(catalog.events(after, limit).await?),
        R::PipelineEvents {
            pipeline,
            after,
            limit,
        } => Response::Events(catalog.pipeline_events(&pipeline, after, limit).await?),
        R::PipelineEventsBefore {
            pipeline,
            before,
            limit,
        } => Response::Events(
            catalog
                .pipeline_events_before(&pipeline, before, limit)
                .await?,
        ),
        R::ListStreams { pipeline } => Response::Streams(catalog.list_streams(&pipeline).await?),
        R::ArchiveHead => Response::ArchiveHead(catalog.archive_head().await?),
        R::Import { batch } => Response::ImportProgress(catalog.import(batch).await?),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hakiri_catalog_memory::MemoryCatalog;
    use hakiri_core::{
        Actor, BeginRun, CatalogExt, ConnectorRef, Cursor, CursorAdvance, CursorKind, CursorValue,
        Entity, Error, Limit, PipelineId, PipelineSpec, ProjectId, StreamName, Trigger,
    };
    use serde_json::json;

    use super::*;
    use crate::wire::{decode_request, encode};

    fn pid(id: &str) -> PipelineId {
        PipelineId::new(id).unwrap()
    }

    fn stream() -> StreamName {
        StreamName::new("orders").unwrap()
    }

    async fn running(catalog: &MemoryCatalog) -> (hakiri_core::Lease, hakiri_core::RunId) {
        let spec = PipelineSpec::new(
            pid("p"),
            ConnectorRef::new("jsonl").unwrap(),
            CursorKind::Monotonic,
        );
        catalog.create_pipeline(spec, &Actor::System).await.unwrap();
        let holder = hakiri_core::HolderId::new("w").unwrap();
        let lease = catalog
            .acquire(&pid("p"), &holder, Duration::from_secs(30))
            .await
            .unwrap();
        let run = catalog
            .begin_run(&lease, BeginRun::new(Trigger::Manual))
            .await
            .unwrap();
        (lease, run.id)
    }

    /// Older clients name an advance `checkpoint`: it decodes to an advance and is answered with
    /// the cursor.
    #[tokio::test]
    async fn a_checkpoint_of_an_older_client_is_answered_as_an_advance() {
        let catalog = MemoryCatalog::new(ProjectId::new("acme").unwrap());
        let (lease, run) = running(&catalog).await;
        let advance = Request::Advance {
            lease,
            run,
            stream: stream(),
            advance: CursorAdvance::to(CursorValue::new(json!(7)).unwrap()),
        };
        let mut body: serde_json::Value = serde_json::from_slice(&encode(&advance)).unwrap();
        body["op"] = json!("checkpoint");
        let decoded = decode_request(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(decoded, advance);
        let Response::Cursor(Cursor { value, version, .. }) =
            dispatch(&catalog, decoded).await.unwrap()
        else {
            panic!("an advance is answered with its cursor");
        };
        assert_eq!((value, version), (CursorValue::new(json!(7)).unwrap(), 1));
    }

    /// A stream without a cursor is `MaybeCursor(None)`, not an error; a missing pipeline is
    /// `NotFound` naming it, as the store answers.
    #[tokio::test]
    async fn reads_answer_the_variant_and_error_the_store_does() {
        let catalog = MemoryCatalog::new(ProjectId::new("acme").unwrap());
        running(&catalog).await;
        let request = |pipeline: &str| Request::GetCursor {
            pipeline: pid(pipeline),
            stream: stream(),
        };
        assert_eq!(
            dispatch(&catalog, request("p")).await.unwrap(),
            Response::MaybeCursor(None)
        );
        let error = dispatch(&catalog, request("missing")).await.unwrap_err();
        assert!(
            matches!(&error, Error::NotFound(Entity::Pipeline { .. })),
            "{error:?}"
        );
        let events = dispatch(
            &catalog,
            Request::Events {
                after: 0,
                limit: Limit::MAX,
            },
        )
        .await
        .unwrap();
        let Response::Events(events) = events else {
            panic!("events are answered as events");
        };
        assert_eq!(events, catalog.events(0, Limit::MAX).await.unwrap());
        assert_eq!(events.len(), 3, "create, acquire, begin: {events:?}");
    }
}
