-- A run is found by its id through the primary key, whatever the planner's statistics say
-- (ADR 0043).
--
-- The listing indexes end in `id` too, so a lookup by project and id could use any of them,
-- reading every run of the project (or of a pipeline) to find one. The planner only avoids
-- that by its statistics. Sessions keep one generic plan per statement, made the first time
-- they run it. While a table is young, or analyzed when it held a single run, the planner
-- judges those indexes as cheap as the key, and the plan it makes then keeps scanning as the
-- project grows, until the next ANALYZE.
--
-- The listing indexes are now partial on a condition every run meets, and a check holds every
-- run to it: a status is never empty. Only a statement that names the condition can use them:
-- the listings, the delete of a pipeline's runs and an import's derived columns do
-- (`run_listing!` in the code). A lookup by id does not, so the primary key is the only index it
-- can use. Every run is still in each index, so the listings read what they read before.
ALTER TABLE runs ADD CONSTRAINT runs_status_named CHECK (status <> '');
DROP INDEX runs_by_pipeline;
DROP INDEX runs_by_status;
DROP INDEX runs_by_pipeline_status;
CREATE INDEX runs_by_pipeline ON runs (project, pipeline, id) WHERE status <> '';
CREATE INDEX runs_by_status ON runs (project, status, id) WHERE status <> '';
CREATE INDEX runs_by_pipeline_status ON runs (project, pipeline, status, id) WHERE status <> '';
