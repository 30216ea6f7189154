-- The rule worker's memory of job outcomes per rule key (one row per follow-up a rule raises
-- or resolves, by its derived id): the CloudEvent `time` of the newest failure and of the
-- newest success seen. Outcomes may arrive in any order (redelivery after a crash, several
-- workers, a replay); a failure older than the newest known success neither opens nor
-- reopens, and a success older than the newest failure does not complete. Written before
-- the effects are stored, only ever moved forward (GREATEST). Not a read model: it is not
-- rebuilt from the events; a replay of the inbound streams fills it again.
CREATE TABLE rule_outcomes (
    followup_id    UUID PRIMARY KEY,
    newest_failure TIMESTAMPTZ,
    newest_success TIMESTAMPTZ
);
