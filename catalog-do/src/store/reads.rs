//! Reads for the reconciler and the audit log: pipeline statuses, events.

use super::*;

impl<E: Exec> Store<'_, E> {
    pub(super) fn pipeline_statuses(
        &mut self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<StatusPage> {
        let after = after.map_or("", PipelineId::as_str);
        let rows = self
            .exec
            .query(STATUS_PAGE, params![after, limit.get() + 1])?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let pipeline: Pipeline = row.json(0)?;
            let hot = hot_from(row, 1)?;
            let id = pipeline.id().as_str().to_owned();
            let last_run = self
                .exec
                .query_row(LAST_RUN, params![id.as_str()])?
                .map(|r| r.json(0))
                .transpose()?;
            let held_decisions = self
                .exec
                .query(HELD_DECISIONS, params![id])?
                .iter()
                .map(|r| r.uint(0).map(DecisionId))
                .collect::<Result<_>>()?;
            items.push(PipelineStatus {
                pipeline,
                lease: hot.lease,
                last_run,
                held_decisions,
            });
        }
        let page = Page::from_overfetch(items, limit, |s| s.pipeline.id().clone());
        Ok(StatusPage {
            items: page.items,
            next: page.next,
            as_of: self.now,
        })
    }

    pub(super) fn events(&mut self, after: u64, limit: Limit) -> Result<Vec<Event>> {
        let rows = self.exec.query(EVENTS_PAGE, params![after, limit.get()])?;
        decode_events(&rows)
    }

    pub(super) fn pipeline_events(
        &mut self,
        pipeline: &PipelineId,
        after: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        self.pipeline_page(PIPELINE_EVENTS_PAGE, pipeline, after, limit)
    }

    pub(super) fn pipeline_events_before(
        &mut self,
        pipeline: &PipelineId,
        before: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        self.pipeline_page(PIPELINE_EVENTS_BEFORE, pipeline, before, limit)
    }

    /// A page of one pipeline's events by `sql` (pipeline, a sequence number, limit).
    fn pipeline_page(
        &mut self,
        sql: &str,
        pipeline: &PipelineId,
        seq: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        let rows = self
            .exec
            .query(sql, params![pipeline.as_str(), seq, limit.get()])?;
        decode_events(&rows)
    }
}

/// Events from rows of `seq, at, actor, pipeline, kind`.
fn decode_events(rows: &[Row]) -> Result<Vec<Event>> {
    rows.iter()
        .map(|r| {
            Ok(Event {
                seq: r.uint(0)?,
                at: Timestamp::from_millis(r.int(1)?),
                actor: r.json(2)?,
                pipeline: PipelineId::new(r.text(3)?)?,
                kind: from_json(r.text(4)?)?,
            })
        })
        .collect()
}
