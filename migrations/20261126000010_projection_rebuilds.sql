-- Rebuilds of projections under way (`followupctl rebuild`, `followupctl verify`;
-- libs/readmodel/src/rebuild.rs). A rebuild loads shadow tables beside the live ones, stream by
-- stream, catches them up and switches them in. This row says how far the loading has got, so
-- an interrupted rebuild resumes where it stopped; it exists only while a rebuild is under way.
-- The shadow's place in the reading order after loading is an ordinary checkpoint in
-- `projection_checkpoints`, under the same name.
CREATE TABLE projection_rebuilds (
    -- The shadow's checkpoint name: `followups.rebuild` or `followups.verify`.
    name                 TEXT PRIMARY KEY,
    -- `load` (streams are being loaded), `index` (indexes are being built) or `catch_up`.
    phase                TEXT NOT NULL CHECK (phase IN ('load', 'index', 'catch_up')),
    -- Loading takes every event up to this point of the reading order (all readable when the
    -- rebuild started); catching up goes on from there.
    until_transaction_id BIGINT NOT NULL,
    until_position       BIGINT NOT NULL,
    -- How many events that is, for progress and ETA.
    events_total         BIGINT NOT NULL,
    -- The last stream loaded (streams are loaded in id order); NULL before the first.
    loaded_through       TEXT,
    -- How many events are loaded.
    events_loaded        BIGINT NOT NULL DEFAULT 0,
    started_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
