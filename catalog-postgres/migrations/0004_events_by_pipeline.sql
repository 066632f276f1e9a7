-- One pipeline's slice of the numbered event log (`Catalog::pipeline_events`, the live event
-- stream's filter by pipeline) as a range scan: a page costs the same however many events other
-- pipelines wrote (`pages_at_scale`).
CREATE INDEX events_by_pipeline ON events (project, pipeline, seq) WHERE seq IS NOT NULL;
