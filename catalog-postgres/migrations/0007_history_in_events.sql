-- A cursor write's history entry moves into the event that records the write (ADR 0038): an
-- advance appends one heap tuple and one index entry fewer. `history` is the entry's document
-- (`CursorHistoryEntry`), as `cursor_history`'s columns held it; `events_history` keeps a
-- cursor's history pages a range scan, and makes an entry unique as the primary key did.
ALTER TABLE events
    ADD COLUMN stream  text COLLATE "C",
    ADD COLUMN version bigint,
    ADD COLUMN history json;

-- The cursor events after a pipeline's last deletion are its current incarnation's. The kinds'
-- stream and version are read from their JSON, with any `\u0000` escape (which Postgres cannot
-- take apart) first replaced: it can only be in a reset's reason, never in a stream's name.
CREATE TEMPORARY TABLE migrating_kinds ON COMMIT DROP AS
    SELECT e.id, e.project, e.pipeline, k.kind->>'type' AS type, k.kind
    FROM events e, LATERAL (SELECT replace(e.kind::text, '\u0000', '\ufffd')::json AS kind) AS k;
CREATE TEMPORARY TABLE migrating_deletions ON COMMIT DROP AS
    SELECT project, pipeline, max(id) AS id FROM migrating_kinds
    WHERE type = 'pipeline_deleted' GROUP BY project, pipeline;
CREATE TEMPORARY TABLE migrating_versions ON COMMIT DROP AS
    SELECT m.id, m.project, m.pipeline, m.kind->>'stream' AS stream,
           (m.kind->>'version')::bigint AS version
    FROM migrating_kinds m
    LEFT JOIN migrating_deletions d ON d.project = m.project AND d.pipeline = m.pipeline
    WHERE m.type IN ('cursor_advanced', 'cursor_reset') AND m.id > coalesce(d.id, 0);

-- The entry's document, field by field as `CursorHistoryEntry` writes it (`at` as a
-- `Timestamp`'s text: RFC 3339, UTC, milliseconds).
UPDATE events e
SET stream = h.stream, version = h.version,
    history = json_build_object(
        'version', h.version, 'value', h.value, 'change', h.change, 'run', h.run,
        'epoch', h.epoch, 'by', h.by_actor,
        'at', to_char((timestamptz 'epoch' + h.at * interval '1 ms') AT TIME ZONE 'UTC',
                      'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
FROM migrating_versions m
JOIN cursor_history h ON h.project = m.project AND h.pipeline = m.pipeline
                     AND h.stream = m.stream AND h.version = m.version
WHERE e.id = m.id;

CREATE UNIQUE INDEX events_history ON events (project, pipeline, stream, version)
    WHERE stream IS NOT NULL;

-- Every history row must have found its event: otherwise the migration fails whole, and the
-- catalog is left as it was.
DO $$
DECLARE
    stray bigint;
BEGIN
    SELECT count(*) INTO stray FROM cursor_history h
    WHERE NOT EXISTS (SELECT 1 FROM events e
                      WHERE e.project = h.project AND e.pipeline = h.pipeline
                        AND e.stream = h.stream AND e.version = h.version);
    IF stray > 0 THEN
        RAISE EXCEPTION 'history_rows_without_their_event: % cursor history rows have no event recording them',
            stray;
    END IF;
END
$$;

DROP TABLE cursor_history;

-- An import receives a pipeline's cursor versions before the events they belong in, in batches
-- that may be resumed: they wait here until their events arrive.
CREATE TABLE importing_history (
    project  text COLLATE "C" NOT NULL,
    pipeline text COLLATE "C" NOT NULL,
    stream   text COLLATE "C" NOT NULL,
    version  bigint NOT NULL,
    body     json   NOT NULL,
    PRIMARY KEY (project, pipeline, stream, version)
);
