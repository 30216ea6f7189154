-- Subscriptions, the per-user inbox state of notifications, and the daily digest's entries
-- (design section 5). `subscriptions` and `notification_inbox` are read models projected from
-- the event store (libs/readmodel) and can be rebuilt from it; `digest_entries` is the
-- notifier's work list for daily digests (services/notifier), refilled by replaying ESAS_EVENTS.

-- One row per subscription, active or cancelled. Written forwards only (by version), by the
-- API's write-through and by the projector.
CREATE TABLE subscriptions (
    id           UUID PRIMARY KEY,
    institution  TEXT NOT NULL,
    -- `user:<id>` or `team:<id>`.
    subscriber   TEXT NOT NULL,
    -- An ESAS event type without its prefix: `education_structure.dates_changed`.
    topic        TEXT NOT NULL,
    -- `{"education": "..."}`: a subscription matches an event whose data contains this
    -- object (`filter <@ data`), so `{}` matches every event of the topic.
    filter       JSONB NOT NULL,
    delivery     TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    cancelled_at TIMESTAMPTZ,
    version      BIGINT NOT NULL
);

-- The notifier's lookup: the subscriptions of one topic in one institution (10,000 of them
-- for a popular education are read in one index range).
CREATE INDEX subscriptions_by_topic ON subscriptions (institution, topic, created_at);
-- A user's own list: its own and its teams' subscriptions.
CREATE INDEX subscriptions_by_subscriber ON subscriptions (institution, subscriber);

-- Where a user stands with a notification; no row means unread.
CREATE TABLE notification_inbox (
    followup_id UUID NOT NULL,
    user_id     TEXT NOT NULL,
    -- `read` or `dismissed`.
    state       TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, followup_id)
);

-- What a `daily_digest` subscription has collected: one row per (subscription, inbound
-- event), so a redelivered or replayed event is collected once.
CREATE TABLE digest_entries (
    subscription_id UUID NOT NULL,
    -- The inbound event's `source#id`.
    event_key       TEXT NOT NULL,
    institution     TEXT NOT NULL,
    subscriber      TEXT NOT NULL,
    topic           TEXT NOT NULL,
    -- One line for the digest, in Danish.
    summary         TEXT NOT NULL,
    -- When the event entered the system (its JetStream time): the day it belongs to.
    occurred_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (subscription_id, event_key)
);

CREATE INDEX digest_entries_by_time ON digest_entries (occurred_at);
