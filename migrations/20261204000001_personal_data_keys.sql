-- Crypto-shredding (GDPR art. 17 and 5(1)(e)): the personal fields of a follow-up's events
-- (subject, description, the regarding record's id, the person, an occurrence's details) are
-- stored encrypted with a key of that follow-up's own, kept here. Destroying the key erases
-- them from every event at once, although the events themselves never change: a reader finds
-- no key and reads the fields as "[slettet]".
--
-- This is the one table of personal data that the service may change and delete from: a key
-- is destroyed by setting `key_material` (and the subject's id) to NULL, which keeps the row as
-- the record that the follow-up was erased, so no later event of it is sealed with a new key.
CREATE TABLE data_keys (
    -- The follow-up stream whose events the key seals: one key per stream, for its life.
    -- Readers join `events USING (stream_id)`; a payload says itself whether it is sealed.
    stream_id     TEXT PRIMARY KEY,
    institution   TEXT,
    -- The data subject the follow-up is about (`student`, `applicant`, `guest_student`,
    -- `user`), and their id: what an erasure request names. NULL: about no one.
    subject_type  TEXT,
    subject_id    TEXT,
    -- 32 random bytes (XChaCha20-Poly1305); NULL once destroyed.
    key_material  BYTEA,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    destroyed_at  TIMESTAMPTZ,
    CONSTRAINT data_keys_destroyed CHECK ((key_material IS NULL) = (destroyed_at IS NOT NULL)),
    CONSTRAINT data_keys_destroyed_forget_the_subject
        CHECK (destroyed_at IS NULL OR subject_id IS NULL)
);

-- Erasure requests look keys up by subject (type, id): rare, and a scan of one row per
-- follow-up is fast enough for them; an index would cost every new follow-up a third of its
-- append time (measured with `followupctl bench append`).

-- Erasure requests, as the operators' record of what was done (who, when, why, how much);
-- never the subject's id. The `erased` events on the follow-ups say the same per follow-up.
CREATE TABLE erasures (
    id            UUID PRIMARY KEY,
    institution   TEXT,
    subject_type  TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    reason        TEXT NOT NULL,
    -- The follow-ups erased (ids only), so that their outbound events can be purged from the
    -- stream also when NATS was away during the erasure: `purged` is set once that is done.
    followup_ids  UUID[] NOT NULL,
    followups     INTEGER NOT NULL,
    held          INTEGER NOT NULL,
    purged        BOOLEAN NOT NULL DEFAULT false,
    purged_messages INTEGER NOT NULL DEFAULT 0,
    at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

SELECT followup_grant_app_role();
