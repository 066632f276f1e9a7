//! Schemas and decisions: observe a stream's schema, read its versions, list and decide the
//! decisions an observation held.

use hakiri_core::evolution::{observe, resolve, Observed};
use hakiri_core::{
    Actor, Decide, Decision, DecisionId, DecisionQuery, Entity, Error, Lease, Observation, Page,
    Pipeline, PipelineId, Result, RunId, Schema, SchemaVersion, StreamName,
};
use sqlx::types::Json;
use sqlx::FromRow;

use super::rows::{to_i64, to_json};
use super::Tx;
use crate::error::db;
use crate::PostgresCatalog;

/// A stream's schema versions, oldest first (`$1` project, `$2` pipeline, `$3` stream).
const SCHEMA_VERSIONS: &str = "SELECT body FROM schema_versions \
     WHERE project = $1 AND pipeline = $2 AND stream = $3 ORDER BY version";

/// A stream's newest schema version; parameters as [`SCHEMA_VERSIONS`].
const NEWEST_SCHEMA_VERSION: &str = "SELECT body FROM schema_versions \
     WHERE project = $1 AND pipeline = $2 AND stream = $3 ORDER BY version DESC LIMIT 1";

/// Whether a pipeline exists, and one version of a stream's schema ([`SchemaRow`]).
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | stream |
/// | `$4` | version (NULL: the newest) |
const READ_SCHEMA: &str =
    "SELECT EXISTS (SELECT 1 FROM pipelines WHERE project = $1 AND id = $2) AS found, \
       (SELECT body FROM schema_versions WHERE project = $1 AND pipeline = $2 \
          AND stream = $3 AND ($4::int IS NULL OR version = $4) \
        ORDER BY version DESC LIMIT 1) AS body";

/// [`READ_SCHEMA`]'s row.
#[derive(FromRow)]
struct SchemaRow {
    found: bool,
    #[sqlx(json(nullable))]
    body: Option<SchemaVersion>,
}

/// Records a schema version.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | stream |
/// | `$4` | version |
/// | `$5` | its document, as JSON text |
const INSERT_SCHEMA_VERSION: &str =
    "INSERT INTO schema_versions (project, pipeline, stream, version, body) \
     VALUES ($1, $2, $3, $4, $5::json)";

/// Records a decision.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | decision |
/// | `$3` | pipeline |
/// | `$4` | stream |
/// | `$5` | whether it holds the stream (pending) |
/// | `$6` | its document, as JSON text |
const INSERT_DECISION: &str = "INSERT INTO decisions (project, id, pipeline, stream, held, body) \
     VALUES ($1, $2, $3, $4, $5, $6::json)";

/// Rewrites a decision; parameters as [`INSERT_DECISION`].
const UPDATE_DECISION: &str = "UPDATE decisions SET held = $5, body = $6::json \
     WHERE project = $1 AND id = $2 AND pipeline = $3 AND stream = $4";

/// A page of decisions by id.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | after this decision (exclusive) |
/// | `$3` | pipeline (NULL: every pipeline) |
/// | `$4` | held ones only |
/// | `$5` | limit |
const DECISIONS_PAGE: &str = "SELECT body FROM decisions WHERE project = $1 AND id > $2 \
       AND ($3::text IS NULL OR pipeline = $3) AND (NOT $4 OR held) \
     ORDER BY id LIMIT $5";

/// The held decisions of a stream, by id (`$1` project, `$2` pipeline, `$3` stream).
const HELD_DECISIONS: &str = "SELECT body FROM decisions \
     WHERE project = $1 AND pipeline = $2 AND stream = $3 AND held ORDER BY id";

impl PostgresCatalog {
    /// Observes a stream's schema during a run
    /// ([`Catalog::observe_schema`](hakiri_core::Catalog::observe_schema)).
    pub(crate) async fn op_observe_schema(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        schema: Schema,
    ) -> Result<Observation> {
        let (mut tx, row) = self.begin_locked(&lease.pipeline).await?;
        let prow = Self::fenced(row, lease, tx.now)?;
        if prow.running != Some(run) {
            return Err(self.run_error(lease, run).await);
        }
        let holder = Actor::Holder(lease.holder.clone());
        let mut pipeline = prow.pipeline;
        let observation = self
            .observe(&mut tx, &mut pipeline, Some(run), &holder, stream, schema)
            .await?;
        tx.commit(self.project_str()).await?;
        Ok(observation)
    }

    /// A stream's newest schema version, read in `tx`.
    async fn newest_schema_version(
        &self,
        tx: &mut Tx,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Option<SchemaVersion>> {
        let body: Option<Json<SchemaVersion>> = sqlx::query_scalar(NEWEST_SCHEMA_VERSION)
            .bind(self.project_str())
            .bind(pipeline.as_str())
            .bind(stream.as_str())
            .fetch_optional(&mut *tx.inner)
            .await
            .map_err(db)?;
        Ok(body.map(|b| b.0))
    }

    /// Applies the observation rule to one schema and writes its outcome, under the pipeline's
    /// lock. `pipeline` is kept current (an earlier schema of the same finish may pause it).
    pub(crate) async fn observe(
        &self,
        tx: &mut Tx,
        pipeline: &mut Pipeline,
        run: Option<RunId>,
        observer: &Actor,
        stream: &StreamName,
        schema: Schema,
    ) -> Result<Observation> {
        let id = pipeline.id().clone();
        let current = self.newest_schema_version(tx, &id, stream).await?;
        let held: Vec<Json<Decision>> = sqlx::query_scalar(HELD_DECISIONS)
            .bind(self.project_str())
            .bind(id.as_str())
            .bind(stream.as_str())
            .fetch_all(&mut *tx.inner)
            .await
            .map_err(db)?;
        let held: Vec<Decision> = held.into_iter().map(|d| d.0).collect();
        let now = tx.now;
        let observed = |pipeline| Observed {
            pipeline,
            stream,
            run,
            observer,
            schema: schema.clone(),
            now,
        };
        // The counter is only reachable asynchronously and the rule asks for an id only when it
        // records a decision: ask it once without one, and again with an id drawn only then, so
        // ids have no gaps, as on every backend.
        let mut needs_id = false;
        let probe = observe(observed(&*pipeline), current.clone(), held.clone(), || {
            needs_id = true;
            Ok(DecisionId(0))
        })?;
        let write = if needs_id {
            let id = DecisionId(self.draw(tx, "decision").await?);
            observe(observed(&*pipeline), current, held, || Ok(id))?
        } else {
            probe
        };
        if let Some(version) = &write.version {
            self.insert_schema_version(tx, version).await?;
        }
        if let Some(pause) = write.pause {
            pipeline.paused = Some(pause);
            pipeline.updated_at = tx.now;
            self.save_pipeline(tx, pipeline).await?;
        }
        if let Some(decision) = &write.decision {
            self.save_decision(tx, INSERT_DECISION, decision).await?;
        }
        for (actor, kind) in write.events {
            tx.emit(&actor, &id, kind);
        }
        Ok(write.observation)
    }

    async fn insert_schema_version(&self, tx: &mut Tx, version: &SchemaVersion) -> Result<()> {
        sqlx::query(INSERT_SCHEMA_VERSION)
            .bind(self.project_str())
            .bind(version.pipeline.as_str())
            .bind(version.stream.as_str())
            .bind(i64::from(version.version))
            .bind(to_json(version)?)
            .execute(&mut *tx.inner)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Binds `decision` to [`INSERT_DECISION`] or [`UPDATE_DECISION`] and runs it in `tx`.
    async fn save_decision(
        &self,
        tx: &mut Tx,
        sql: &'static str,
        decision: &Decision,
    ) -> Result<()> {
        sqlx::query(sql)
            .bind(self.project_str())
            .bind(to_i64(decision.id.get())?)
            .bind(decision.pipeline.as_str())
            .bind(decision.stream.as_str())
            .bind(decision.is_pending())
            .bind(to_json(decision)?)
            .execute(&mut *tx.inner)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Reads one version of a stream's schema, the newest by default
    /// ([`Catalog::get_schema`](hakiri_core::Catalog::get_schema)).
    pub(crate) async fn op_get_schema(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        version: Option<u32>,
    ) -> Result<SchemaVersion> {
        let row: SchemaRow = sqlx::query_as(READ_SCHEMA)
            .bind(self.project_str())
            .bind(pipeline.as_str())
            .bind(stream.as_str())
            .bind(version.map(|v| i32::try_from(v).unwrap_or(i32::MAX)))
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        if !row.found {
            return Err(Error::pipeline_not_found(pipeline));
        }
        row.body.ok_or_else(|| {
            Error::NotFound(Entity::Schema {
                pipeline: pipeline.clone(),
                stream: stream.clone(),
                version,
            })
        })
    }

    /// Reads every version of a stream's schema
    /// ([`Catalog::list_schema_versions`](hakiri_core::Catalog::list_schema_versions)).
    pub(crate) async fn op_list_schema_versions(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Vec<SchemaVersion>> {
        let versions: Vec<Json<SchemaVersion>> = sqlx::query_scalar(SCHEMA_VERSIONS)
            .bind(self.project_str())
            .bind(pipeline.as_str())
            .bind(stream.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        if versions.is_empty() {
            self.op_get_pipeline(pipeline).await?;
        }
        Ok(versions.into_iter().map(|v| v.0).collect())
    }

    /// How many decisions of `pipeline` hold a stream, read in `tx`.
    pub(crate) async fn held_count(&self, tx: &mut Tx, pipeline: &PipelineId) -> Result<usize> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM decisions WHERE project = $1 AND pipeline = $2 AND held",
        )
        .bind(self.project_str())
        .bind(pipeline.as_str())
        .fetch_one(&mut *tx.inner)
        .await
        .map_err(db)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// A page of decisions by id ([`Catalog::list_decisions`](hakiri_core::Catalog::list_decisions)).
    pub(crate) async fn op_list_decisions(
        &self,
        query: &DecisionQuery,
    ) -> Result<Page<Decision, DecisionId>> {
        let bodies: Vec<Json<Decision>> = sqlx::query_scalar(DECISIONS_PAGE)
            .bind(self.project_str())
            .bind(to_i64(query.after.map_or(0, DecisionId::get))?)
            .bind(query.pipeline.as_ref().map(PipelineId::as_str))
            .bind(query.held_only)
            .bind(i64::from(query.limit.get()) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let items = bodies.into_iter().map(|b| b.0).collect();
        Ok(Page::from_overfetch(items, query.limit, |d| d.id))
    }

    /// Decides a held decision ([`Catalog::decide`](hakiri_core::Catalog::decide)).
    pub(crate) async fn op_decide(&self, id: DecisionId, decide: &Decide) -> Result<Decision> {
        let not_found = || Error::NotFound(Entity::Decision { decision: id });
        let pipeline: Option<String> =
            sqlx::query_scalar("SELECT pipeline FROM decisions WHERE project = $1 AND id = $2")
                .bind(self.project_str())
                .bind(to_i64(id.get())?)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        let pipeline = PipelineId::new(pipeline.ok_or_else(not_found)?)?;
        // The pipeline's lock serialises deciders: the second one reads the decided record.
        let (mut tx, row) = self.begin_locked(&pipeline).await?;
        let mut record = row.ok_or_else(not_found)?.pipeline;
        let body: Option<Json<Decision>> =
            sqlx::query_scalar("SELECT body FROM decisions WHERE project = $1 AND id = $2")
                .bind(self.project_str())
                .bind(to_i64(id.get())?)
                .fetch_optional(&mut *tx.inner)
                .await
                .map_err(db)?;
        let current = body.ok_or_else(not_found)?.0;
        let current_version = self
            .newest_schema_version(&mut tx, &pipeline, &current.stream)
            .await?
            .map_or(0, |v| v.version);
        let other_held = self
            .held_count(&mut tx, &pipeline)
            .await?
            .saturating_sub(usize::from(current.is_pending()));
        let write = resolve(
            &current,
            decide,
            &record,
            current_version,
            other_held,
            tx.now,
        )?;
        if let Some(version) = &write.version {
            self.insert_schema_version(&mut tx, version).await?;
        }
        self.save_decision(&mut tx, UPDATE_DECISION, &write.decision)
            .await?;
        if write.resume {
            record.paused = None;
            record.updated_at = tx.now;
            self.save_pipeline(&mut tx, &record).await?;
        }
        for (actor, kind) in write.events {
            tx.emit(&actor, &pipeline, kind);
        }
        let decided = write.decision;
        tx.commit(self.project_str()).await?;
        Ok(decided)
    }
}
