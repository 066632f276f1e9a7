//! The reads for the reconciler and the audit log: the status page of every pipeline, and the
//! numbered event log.

use std::sync::LazyLock;

use hakiri_core::{
    DecisionId, Event, Limit, Page, PipelineId, PipelineStatus, Result, StatusPage, Timestamp,
};

use super::rows::{to_u64, EventRow, StatusRow};
use super::NOW_MS;
use crate::error::db;
use crate::PostgresCatalog;

/// A page of the reconciler snapshot ([`StatusRow`]): the page of pipelines (primary key range),
/// each one's newest run by primary key (`last_run`), and its held decisions through the partial
/// index. One row of NULLs beside the clock when the page is empty.
///
/// The run and the decisions are subqueries of each pipeline's row, so each is a lookup by key
/// whatever the statistics were when the plan was made: a join planned while the tables were
/// small could read every run of the project (ADR 0043).
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | after this pipeline (exclusive) |
/// | `$3` | limit |
pub(crate) static STATUS_PAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {NOW_MS} AS now, p.body, p.lease_epoch, p.lease_holder, p.lease_expires_at, \
           (SELECT r.body FROM runs r WHERE r.project = $1 AND r.id = p.last_run) AS last_run, \
           ARRAY(SELECT d.id FROM decisions d WHERE d.project = $1 AND d.pipeline = p.id \
                 AND d.held ORDER BY d.id) AS held \
         FROM (VALUES (1)) AS one(x) \
         LEFT JOIN (SELECT * FROM pipelines WHERE project = $1 AND id > $2 ORDER BY id LIMIT $3) p \
           ON true \
         ORDER BY p.id"
    )
});

/// A page of the numbered event log ([`EventRow`]).
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | after this sequence number (exclusive) |
/// | `$3` | limit |
pub(crate) const EVENTS_PAGE: &str = "SELECT seq, at, actor, pipeline, kind FROM events \
     WHERE project = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// A page of one pipeline's numbered events ([`EventRow`]), a range of `events_by_pipeline`.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | after this sequence number (exclusive) |
/// | `$4` | limit |
pub(crate) const PIPELINE_EVENTS_PAGE: &str = "SELECT seq, at, actor, pipeline, kind FROM events \
     WHERE project = $1 AND pipeline = $2 AND seq > $3 ORDER BY seq LIMIT $4";

/// A page of one pipeline's numbered events read backwards ([`EventRow`]): the newest below
/// `$3`, oldest first; the same range of `events_by_pipeline`, walked down.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | before this sequence number (exclusive) |
/// | `$4` | limit |
pub(crate) const PIPELINE_EVENTS_BEFORE: &str = "SELECT * FROM (SELECT seq, at, actor, pipeline, \
     kind FROM events WHERE project = $1 AND pipeline = $2 AND seq < $3 ORDER BY seq DESC \
     LIMIT $4) AS page ORDER BY seq";

/// Whether the project has committed events not numbered yet (`$1` project).
const UNNUMBERED_EVENTS: &str =
    "SELECT EXISTS (SELECT 1 FROM events WHERE project = $1 AND seq IS NULL)";

impl PostgresCatalog {
    /// A page of the reconciler snapshot
    /// ([`Catalog::pipeline_statuses`](hakiri_core::Catalog::pipeline_statuses)).
    pub(crate) async fn op_pipeline_statuses(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<StatusPage> {
        let rows: Vec<StatusRow> = sqlx::query_as(STATUS_PAGE.as_str())
            .bind(self.project_str())
            .bind(after.map_or("", PipelineId::as_str))
            .bind(i64::from(limit.get()) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut now = Timestamp::EPOCH;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            now = Timestamp::from_millis(row.now);
            let Some(pipeline) = row.body else {
                continue;
            };
            items.push(PipelineStatus {
                pipeline,
                lease: row.lease.state()?,
                last_run: row.last_run,
                held_decisions: row
                    .held
                    .into_iter()
                    .map(|d| to_u64(d, "decision id").map(DecisionId))
                    .collect::<Result<_>>()?,
            });
        }
        let page = Page::from_overfetch(items, limit, |s| s.pipeline.id().clone());
        Ok(StatusPage {
            items: page.items,
            next: page.next,
            as_of: now,
        })
    }

    /// Numbers the project's committed, unnumbered events, continuing its gapless sequence: one
    /// autocommitted call of the `number_events` function, so no client can stall while holding
    /// the project's numbering lock (ADR 0015).
    pub(crate) async fn number_events(&self) -> Result<()> {
        let pending: bool = sqlx::query_scalar(UNNUMBERED_EVENTS)
            .bind(self.project_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        if !pending {
            return Ok(());
        }
        sqlx::query("SELECT number_events($1)")
            .bind(self.project_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// A page of the event log, numbering committed events first
    /// ([`Catalog::events`](hakiri_core::Catalog::events)).
    pub(crate) async fn op_events(&self, after: u64, limit: Limit) -> Result<Vec<Event>> {
        self.number_events().await?;
        let rows: Vec<EventRow> = sqlx::query_as(EVENTS_PAGE)
            .bind(self.project_str())
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(i64::from(limit.get()))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        to_events(rows)
    }

    /// A page of one pipeline's events
    /// ([`Catalog::pipeline_events`](hakiri_core::Catalog::pipeline_events)).
    pub(crate) async fn op_pipeline_events(
        &self,
        pipeline: &PipelineId,
        after: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        self.pipeline_page(PIPELINE_EVENTS_PAGE, pipeline, after, limit)
            .await
    }

    /// A pipeline's events before a number
    /// ([`Catalog::pipeline_events_before`](hakiri_core::Catalog::pipeline_events_before)).
    pub(crate) async fn op_pipeline_events_before(
        &self,
        pipeline: &PipelineId,
        before: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        self.pipeline_page(PIPELINE_EVENTS_BEFORE, pipeline, before, limit)
            .await
    }

    /// A page of one pipeline's events by `sql` (project, pipeline, a sequence number, limit),
    /// numbering committed events first.
    async fn pipeline_page(
        &self,
        sql: &'static str,
        pipeline: &PipelineId,
        seq: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        self.number_events().await?;
        let rows: Vec<EventRow> = sqlx::query_as(sql)
            .bind(self.project_str())
            .bind(pipeline.as_str())
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .bind(i64::from(limit.get()))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        to_events(rows)
    }
}

fn to_events(rows: Vec<EventRow>) -> Result<Vec<Event>> {
    rows.into_iter()
        .map(|row| {
            Ok(Event {
                seq: to_u64(row.seq, "event sequence number")?,
                at: Timestamp::from_millis(row.at),
                actor: row.actor,
                pipeline: row.pipeline,
                kind: row.kind,
            })
        })
        .collect()
}
