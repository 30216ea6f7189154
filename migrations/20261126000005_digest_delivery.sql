-- Which digest delivered each daily-digest entry. A digest takes every entry not delivered
-- yet up to its cut-off, so an entry that arrives late (the notifier was down overnight, a
-- replay of old events) goes into the next digest instead of being lost.
ALTER TABLE digest_entries ADD COLUMN digest_id UUID;

CREATE INDEX digest_entries_undelivered ON digest_entries (occurred_at)
    WHERE digest_id IS NULL;
