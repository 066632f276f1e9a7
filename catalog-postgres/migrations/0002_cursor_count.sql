-- How many cursors a pipeline has. Every statement that creates a cursor row bumps it, under the
-- pipeline's row lock, so a finish that locks the row sees a cursor created after its statement's
-- snapshot was taken — which a scan of `cursors` in that statement cannot (ADR 0014).
ALTER TABLE pipelines ADD COLUMN cursor_count integer NOT NULL DEFAULT 0;

UPDATE pipelines p SET cursor_count = (
    SELECT count(*) FROM cursors c WHERE c.project = p.project AND c.pipeline = p.id
);
