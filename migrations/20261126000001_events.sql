-- The append-only event store: every change to a follow-up is one row here, forever.
--
-- Reading "everything after a checkpoint" without skipping a late commit: `position` is handed
-- out when a row is inserted, not when its transaction commits, so a reader that only asks for
-- `position > last` can miss a row whose transaction commits after a higher position was already
-- read. Each row therefore records the id of the transaction that wrote it, and readers order by
-- (transaction_id, position) and only read rows of transactions older than the oldest one still
-- running (pg_snapshot_xmin). Every row such a reader could ever see later sorts after what it
-- has already read.
CREATE TABLE events (
    position        BIGINT GENERATED ALWAYS AS IDENTITY,
    transaction_id  BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    stream_id       TEXT NOT NULL,
    stream_type     TEXT NOT NULL,
    version         BIGINT NOT NULL CHECK (version >= 1),
    event_id        UUID NOT NULL,
    event_type      TEXT NOT NULL,
    schema_version  INTEGER NOT NULL CHECK (schema_version >= 1),
    payload         JSONB NOT NULL,
    actor           JSONB NOT NULL,
    correlation_id  TEXT,
    causation_id    TEXT,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The reading order is the key: every reader of the whole store goes by it.
    CONSTRAINT events_pkey PRIMARY KEY (transaction_id, position),
    CONSTRAINT events_event_id_unique UNIQUE (event_id),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, version)
);

-- Live tails are woken by `NOTIFY followup_events`, sent by the appending process after its
-- commit (coalesced, see libs/store/src/event_store.rs), not by a trigger: a NOTIFY inside the
-- appending transaction serialises every commit on a global lock and halved append throughput.

-- Guarantee 1: the database itself refuses to change or remove events. Statement-level
-- triggers, so that even a statement matching no row is refused.
CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event store is append-only: % on events is refused', TG_OP
        USING ERRCODE = 'P0001', HINT = 'Append a new event that corrects the old one instead.';
END;
$$;

CREATE TRIGGER events_refuse_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_refuse_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
