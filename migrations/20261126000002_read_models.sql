-- Read models: the current state of every follow-up, projected from the event store
-- (libs/readmodel). Everything here can be thrown away and rebuilt from `events` alone.

-- One row per follow-up. `doc` is the whole follow-up as the API returns it; the other columns
-- are copies of its fields that the list filters, the visibility rule and the dashboard query.
-- Rows are written only forwards: an upsert changes a row only when it brings a newer
-- `version`, so the projector and the API's write-through can both write, in any order.
CREATE TABLE followups_view (
    id            UUID PRIMARY KEY,
    institution   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    status        TEXT NOT NULL,
    -- `user:<id>` or `team:<id>`.
    owner         TEXT NOT NULL,
    -- The owner and everyone it is shared with (`user:<id>`, `team:<id>`): who may see it,
    -- besides the institution's admins.
    principals    TEXT[] NOT NULL,
    -- The same, each prefixed with the institution (`KP/team:admissions`): what the
    -- visibility index holds. Team names such as `admissions` repeat in every institution,
    -- and an index on `principals` alone would make a caseworker's lookup wade through every
    -- institution's rows of its teams.
    scoped_principals TEXT[] NOT NULL,
    -- `<type>:<id>` of the ESAS record it is about.
    regarding     TEXT,
    subject       TEXT NOT NULL,
    due           TIMESTAMPTZ,
    overdue_since TIMESTAMPTZ,
    priority      TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    version       BIGINT NOT NULL,
    doc           JSONB NOT NULL
) WITH (fillfactor = 90); -- room on each page, so edits that change no indexed column stay HOT

-- Indexes, by the queries of libs/readmodel/src/read_model.rs (checked with EXPLAIN ANALYZE on
-- 1,000,000 rows: libs/readmodel/examples/bench.rs). A list first finds the ids of its page
-- (the inner query), then fetches those rows; the inner query can often be answered from an
-- index alone.
--
-- A caseworker's lookup by visibility: what the user or one of its teams owns or is shared.
CREATE INDEX followups_view_visible ON followups_view USING gin (scoped_principals);
-- The same for open follow-ups only: a caseworker's work list, small even when its teams
-- have years of finished follow-ups.
CREATE INDEX followups_view_visible_open ON followups_view USING gin (scoped_principals)
    WHERE status = 'open';
-- The list order, newest first (the cursor's key), for one institution: an admin's lists,
-- and a caseworker who sees enough of the institution that walking it newest-first finds a
-- page sooner than collecting everything visible. It carries the columns most filters test,
-- so the walk does not have to visit the table for rows that do not match.
CREATE INDEX followups_view_recent
    ON followups_view (institution, created_at DESC, id DESC)
    INCLUDE (scoped_principals, status, kind, owner, due);
-- `owner=` lists, newest first. Owner leads, like in the dashboard's index, so that neither
-- offers PostgreSQL a scan of a whole institution to combine with the visibility index.
CREATE INDEX followups_view_owner
    ON followups_view (owner, institution, created_at DESC, id DESC);
-- Every follow-up about one ESAS record (`regarding=application:A-1`).
CREATE INDEX followups_view_regarding
    ON followups_view (institution, regarding)
    WHERE regarding IS NOT NULL;
-- The dashboard counts open follow-ups by owner, kind and due date from this index alone.
CREATE INDEX followups_view_dashboard
    ON followups_view (owner, institution, kind, due)
    WHERE status = 'open';

-- Where each projector has got to in the event store's reading order, written in the same
-- transaction as the rows it projected, so a restart resumes with nothing lost or doubled.
CREATE TABLE projection_checkpoints (
    name           TEXT PRIMARY KEY,
    -- The (transaction id, position) of the last event projected (see the events migration).
    transaction_id BIGINT NOT NULL,
    position       BIGINT NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
