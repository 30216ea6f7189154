-- Least privilege (design section 8): migrations run as the owner role (`followup_owner`), the
-- service as the application role (`followup_app`), which may only read and append events: no
-- UPDATE, DELETE or TRUNCATE, and, not being their owner, no ALTER TABLE, no trigger changes.
-- `deploy/ensure-services.sh` creates both roles; an installation creates its own (see
-- docs/operations.md "Database roles").
--
-- The grants live in a function, because roles belong to the whole server while migrations run
-- once per database: `followupd` calls it after migrating, so a role created later gets its
-- grants at the next start. Without a `followup_app` role it does nothing.
--
-- What the application role gets:
-- - `events`: SELECT and INSERT, nothing else;
-- - the read models that a rebuild replaces with new tables (`followups_view`,
--   `notification_inbox`, `subscriptions`): ownership, so that `followupctl rebuild` can swap
--   them; they hold nothing the events do not;
-- - every other table (checkpoints, digest entries, scheduler firings, rule outcomes,
--   rebuild records): SELECT, INSERT, UPDATE, DELETE;
-- - CREATE on the schema, for a rebuild's shadow tables.
CREATE FUNCTION followup_grant_app_role() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    read_model text;
    other text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'followup_app') THEN
        RETURN false;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO followup_app', current_database());
    GRANT USAGE, CREATE ON SCHEMA public TO followup_app;
    REVOKE ALL ON events FROM followup_app;
    GRANT SELECT, INSERT ON events TO followup_app;
    FOREACH read_model IN ARRAY ARRAY['followups_view', 'notification_inbox', 'subscriptions'] LOOP
        BEGIN
            EXECUTE format('ALTER TABLE %I OWNER TO followup_app', read_model);
        EXCEPTION WHEN insufficient_privilege THEN
            -- A rebuild run as another role left the table to that role: say so, go on.
            RAISE WARNING 'cannot hand read model % to followup_app: %', read_model, SQLERRM;
        END;
    END LOOP;
    FOR other IN
        SELECT tablename FROM pg_tables
        WHERE schemaname = 'public'
          AND tablename NOT IN ('events', '_sqlx_migrations', 'followups_view',
                                'notification_inbox', 'subscriptions')
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO followup_app', other);
    END LOOP;
    RETURN true;
END;
$$;

SELECT followup_grant_app_role();
