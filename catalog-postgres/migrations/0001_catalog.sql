-- Hakiri's catalog on Postgres: every row is keyed by project (one database serves many
-- projects), documents are `json` beside the hot columns that guarded statements compare.
--
-- `json`, not `jsonb`: stored verbatim (no key reordering, and strings may hold \u0000, which
-- jsonb refuses), cheaper to write, and still queryable with -> and ->>.
-- Text keys are COLLATE "C": listings order them bytewise, as every other backend does, and
-- keyset conditions (`id > $after`) use the indexes whatever the database's locale.
-- Times are integer milliseconds since the Unix epoch (ADR 0007), taken from the database's
-- clock_timestamp() by the statements themselves: the caller's clock is never trusted.
-- Never edit a migration that has shipped; add a new one.

-- One row per project that has read its event log: where the log's numbering stands.
CREATE TABLE projects (
    project  text COLLATE "C"   PRIMARY KEY,
    last_seq bigint NOT NULL DEFAULT 0
);

-- Fencing epochs never repeat within a project (ADR 0007); one sequence for all projects keeps
-- that, without a per-project counter row that every acquisition would have to lock. Sequences
-- are not transactional: a refused acquisition leaves a gap, never a repeat. Capped at 2^53 - 1.
CREATE SEQUENCE epochs AS bigint MINVALUE 1 MAXVALUE 9007199254740991;
CREATE SEQUENCE decision_ids AS bigint MINVALUE 1 MAXVALUE 9007199254740991;

CREATE TABLE pipelines (
    project          text COLLATE "C"    NOT NULL,
    id               text COLLATE "C"    NOT NULL,
    -- The `Pipeline` document (spec, generation, pause).
    body             json    NOT NULL,
    generation       bigint  NOT NULL,
    cursor_kind      text    NOT NULL CHECK (cursor_kind IN ('monotonic', 'opaque')),
    lease_epoch      bigint,
    lease_holder     text,
    lease_expires_at bigint,
    -- The run in progress (at most one, of the current epoch), and the newest run: the
    -- reconciler snapshot reads it by primary key instead of scanning the pipeline's runs.
    running_run      uuid,
    last_run         uuid,
    PRIMARY KEY (project, id)
) WITH (fillfactor = 80);

CREATE TABLE runs (
    project  text COLLATE "C" NOT NULL,
    id       uuid NOT NULL,
    pipeline text COLLATE "C" NOT NULL,
    status   text COLLATE "C" NOT NULL,
    body     json NOT NULL,
    PRIMARY KEY (project, id)
);
-- Run ids are UUIDv7 (time-ordered): every listing is a backwards keyset scan on one of these,
-- O(page) whichever filters are set.
CREATE INDEX runs_by_pipeline ON runs (project, pipeline, id);
CREATE INDEX runs_by_status ON runs (project, status, id);
CREATE INDEX runs_by_pipeline_status ON runs (project, pipeline, status, id);

-- A checkpoint rewrites one row in place: fillfactor leaves room for heap-only (HOT) updates,
-- which touch no index.
CREATE TABLE cursors (
    project    text COLLATE "C"   NOT NULL,
    pipeline   text COLLATE "C"   NOT NULL,
    stream     text COLLATE "C"   NOT NULL,
    version    bigint NOT NULL,
    value      json   NOT NULL,
    run        uuid,
    epoch      bigint,
    updated_by json   NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (project, pipeline, stream)
) WITH (fillfactor = 70);

-- Append-only; the primary key serves `cursor_history` (newest first, keyset on the version).
CREATE TABLE cursor_history (
    project  text COLLATE "C"   NOT NULL,
    pipeline text COLLATE "C"   NOT NULL,
    stream   text COLLATE "C"   NOT NULL,
    version  bigint NOT NULL,
    value    json   NOT NULL,
    change   json   NOT NULL,
    run      uuid,
    epoch    bigint,
    by_actor json   NOT NULL,
    at       bigint NOT NULL,
    PRIMARY KEY (project, pipeline, stream, version)
);

CREATE TABLE schema_versions (
    project  text COLLATE "C"    NOT NULL,
    pipeline text COLLATE "C"    NOT NULL,
    stream   text COLLATE "C"    NOT NULL,
    version  integer NOT NULL,
    body     json    NOT NULL,
    PRIMARY KEY (project, pipeline, stream, version)
);

CREATE TABLE decisions (
    project  text COLLATE "C"    NOT NULL,
    id       bigint  NOT NULL,
    pipeline text COLLATE "C"    NOT NULL,
    stream   text COLLATE "C"    NOT NULL,
    held     boolean NOT NULL,
    body     json    NOT NULL,
    PRIMARY KEY (project, id)
);
CREATE INDEX decisions_by_pipeline ON decisions (project, pipeline, id);
-- The reconciler snapshot asks for every pipeline's held decisions on each tick.
CREATE INDEX decisions_held ON decisions (project, pipeline, id) WHERE held;

-- The event log. A write appends its events with `seq` NULL and an `id` from a sequence, so
-- writers never wait for each other on a project-wide counter. Reading the log first numbers the
-- committed, unnumbered events of the project in id order (under the `projects` row lock), so the
-- numbering is gapless, starts at 1 and never changes once given (ADR 0009).
-- A checkpoint appends an event, so an append touches one small index only: `events_unnumbered`
-- (the numbering finds rows through it); `seq` is indexed once given. No primary key on `id`:
-- the identity makes it unique, and nothing looks a row up by it alone.
CREATE TABLE events (
    id       bigint GENERATED ALWAYS AS IDENTITY,
    project  text COLLATE "C"   NOT NULL,
    seq      bigint,
    at       bigint NOT NULL,
    actor    json   NOT NULL,
    pipeline text COLLATE "C"   NOT NULL,
    kind     json   NOT NULL
);
CREATE UNIQUE INDEX events_by_seq ON events (project, seq) WHERE seq IS NOT NULL;
CREATE INDEX events_unnumbered ON events (project, id) WHERE seq IS NULL;
