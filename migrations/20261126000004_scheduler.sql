-- The scheduler (services/scheduler): which firings of its cron jobs have run, and the
-- indexes its jobs' scans use.

-- One row per firing of a job: the job and the instant it was scheduled for (its local time
-- in Europe/Copenhagen, as UTC). The primary key is what makes several schedulers safe: a
-- firing is claimed by inserting its row (or by taking over a row whose lease has run out),
-- so of the schedulers that reach the same tick exactly one runs it. Only the latest tick of
-- a job is ever claimed, so after downtime a missed firing runs once, not once per missed tick.
CREATE TABLE scheduler_firings (
    job           TEXT NOT NULL,
    scheduled_at  TIMESTAMPTZ NOT NULL,
    -- `running` (claimed), `done`, or `failed` (to be retried at `lease_until`).
    status        TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    -- How many times it has been started (1 for the first run; more after failures and
    -- take-overs). Sets the back-off of the next retry.
    attempts      INTEGER NOT NULL DEFAULT 1,
    -- The scheduler process that claimed it last (for operators).
    claimed_by    TEXT NOT NULL,
    -- `running`: until when the claim holds; the running scheduler renews it, and another
    -- scheduler takes the firing over once it has passed (the first one crashed).
    -- `failed`: when it may be retried. `done`: unused.
    lease_until   TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    -- Why the last attempt failed, for operators.
    last_error    TEXT,
    -- What the job did (counts), for operators.
    report        JSONB,
    PRIMARY KEY (job, scheduled_at)
);

-- The overdue scan (`status = 'open' AND overdue_since IS NULL AND due < now`, in due order)
-- and the reminder scan (the same, due in the next hours) read only this index: it holds just
-- the open follow-ups that have a due date and are not marked overdue, in due order.
CREATE INDEX followups_view_due_unmarked ON followups_view (due, id)
    WHERE status = 'open' AND overdue_since IS NULL AND due IS NOT NULL;

-- The escalation scan: open exceptions, in due order (overdue ones are marked, so the index
-- above does not hold them).
CREATE INDEX followups_view_open_exceptions_due ON followups_view (due, id)
    WHERE status = 'open' AND kind = 'exception' AND due IS NOT NULL;
