-- An import into a project that has not finished (`Catalog::import`, ADR 0033): which archive
-- (its digest) and how many of its records have landed, so that importing the same archive again
-- resumes it and any other archive is refused. The row goes with the import's last batch.
CREATE TABLE imports (
    project text   COLLATE "C" PRIMARY KEY,
    archive text   NOT NULL,
    applied bigint NOT NULL CHECK (applied >= 0)
);
