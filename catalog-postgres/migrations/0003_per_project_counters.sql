-- Epochs and decision ids are counted per project, as on every other backend: ids of one project
-- no longer depend on (nor reveal) another project's activity (ADR 0015). A counter row is
-- locked from its increment to the end of its transaction, so an acquisition draws its epoch
-- under the pipeline's row lock (never lower than one committed before it) and a refused one
-- rolls its draw back; a decision id is drawn only when an observation records a decision.
CREATE TABLE counters (
    project text   COLLATE "C" NOT NULL,
    name    text   COLLATE "C" NOT NULL CHECK (name IN ('epoch', 'decision')),
    value   bigint NOT NULL CHECK (value BETWEEN 0 AND 9007199254740991),
    PRIMARY KEY (project, name)
);

-- `projects` becomes the register of every project that exists (a pipeline's creation registers
-- its project), so that a mistyped project name can be refused instead of showing an empty
-- catalog.
INSERT INTO projects (project)
    SELECT project FROM pipelines UNION SELECT project FROM events
    ON CONFLICT (project) DO NOTHING;

-- Existing projects continue above every epoch the shared sequence handed out (a zombie of a
-- deleted pipeline must stay fenced) and above their own highest decision id.
INSERT INTO counters (project, name, value)
    SELECT project, 'epoch', (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM epochs)
    FROM projects;
INSERT INTO counters (project, name, value)
    SELECT p.project, 'decision',
           coalesce((SELECT max(d.id) FROM decisions d WHERE d.project = p.project), 0)
    FROM projects p;

DROP SEQUENCE epochs;
DROP SEQUENCE decision_ids;

-- Numbers the project's committed, unnumbered events, continuing its gapless sequence (ADR 0009).
-- The caller runs it as one autocommitted statement, so no client can stall between taking the
-- project's row lock and releasing it: a reader never waits on a stalled reader (ADR 0015). A
-- PL/pgSQL statement takes a fresh snapshot, so the numbering sees every event committed before
-- the lock was taken.
CREATE FUNCTION number_events(for_project text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    last bigint;
BEGIN
    INSERT INTO projects AS p (project) VALUES (for_project)
        ON CONFLICT (project) DO UPDATE SET last_seq = p.last_seq
        RETURNING p.last_seq INTO last;
    WITH todo AS (SELECT e.id, row_number() OVER (ORDER BY e.id) AS n FROM events e
                  WHERE e.project = for_project AND e.seq IS NULL),
         numbered AS (UPDATE events e SET seq = last + todo.n FROM todo
                      WHERE e.project = for_project AND e.seq IS NULL AND e.id = todo.id
                      RETURNING e.seq)
    UPDATE projects p SET last_seq = (SELECT coalesce(max(seq), last) FROM numbered)
    WHERE p.project = for_project;
END
$$;
