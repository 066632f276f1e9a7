-- Numbering events costs O(n) whatever the planner's statistics say (ADR 0015, "Events are
-- numbered ... in one statement").
--
-- 0003's function joined the unnumbered events to their ranks, an inlined window subquery. Read
-- right after a burst of appends, the statistics (taken before it) estimate one unnumbered
-- event, and the planner chose a nested loop that re-ran the ranking for every event: O(n²),
-- 75-90 s for 8,000 events on PostgreSQL 15, 9,022,013 rows read for 3,003
-- (`tests/numbering.rs`). A project whose log nobody read for a while paid that on its first
-- read, holding the project's numbering lock throughout.
--
-- The statement is the same; two things change, so no estimate can make it quadratic:
-- - `todo AS MATERIALIZED`: the ranking runs once, into the statement's own work table, however
--   the join uses it.
-- - `SET enable_nestloop = off` for the function's statements only: a nested loop is costed out
--   (PostgreSQL 18: never chosen while another plan exists), and the join on `id`, an equality
--   of bigints, always has one — a hash or merge join, which reads each side once. A nested
--   loop is only the best plan for a handful of events, where any plan takes microseconds.
-- Rejected: numbering from `unnest(array) WITH ORDINALITY` leaves the same join to the same
-- estimates (a function scan's rescan re-reads its whole result, O(n²) again without touching a
-- table); a loop of one UPDATE per event is O(n) statements and still plans each one blind.
--
-- Unchanged, and why they hold: the caller runs it as one autocommitted statement, so no client
-- can stall between taking the project's row lock and releasing it: a reader never waits on a
-- stalled reader (ADR 0015). The project's row is locked first (the upsert), so numberings of a
-- project take turns; each PL/pgSQL statement takes a fresh snapshot, so the numbering sees
-- every event committed before the lock was taken and continues the project's gapless sequence
-- (ADR 0009).
CREATE OR REPLACE FUNCTION number_events(for_project text) RETURNS void LANGUAGE plpgsql
SET enable_nestloop = off
AS $$
DECLARE
    last bigint;
BEGIN
    INSERT INTO projects AS p (project) VALUES (for_project)
        ON CONFLICT (project) DO UPDATE SET last_seq = p.last_seq
        RETURNING p.last_seq INTO last;
    WITH todo AS MATERIALIZED (SELECT e.id, row_number() OVER (ORDER BY e.id) AS n FROM events e
                               WHERE e.project = for_project AND e.seq IS NULL),
         numbered AS (UPDATE events e SET seq = last + todo.n FROM todo
                      WHERE e.project = for_project AND e.seq IS NULL AND e.id = todo.id
                      RETURNING e.seq)
    UPDATE projects p SET last_seq = (SELECT coalesce(max(seq), last) FROM numbered)
    WHERE p.project = for_project;
END
$$;
