-- The application role, tightened (replaces the function of 20261203000001):
-- - it no longer owns the read models and may not create tables: a rebuild (which builds
--   shadow tables and swaps them in) runs as the owner role (`followupctl rebuild` connects
--   with FOLLOWUP_MIGRATE_DATABASE_URL) and calls this function after the swap, so that the
--   new tables are granted at once. Without CREATE on the schema the application role cannot
--   plant an object there that a later migration, run as the owner, would resolve to
--   (CVE-2018-1058).
-- - the function runs with a fixed search_path and qualified names;
-- - it changes only what is not in place, under an advisory lock, so that instances starting
--   together neither take table locks they do not need nor update the same catalog rows at
--   once.
CREATE OR REPLACE FUNCTION followup_grant_app_role() RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'followup_app') THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(7061626);
    IF has_schema_privilege('followup_app', 'public', 'CREATE') THEN
        REVOKE CREATE ON SCHEMA public FROM followup_app;
    END IF;
    IF NOT has_schema_privilege('followup_app', 'public', 'USAGE') THEN
        GRANT USAGE ON SCHEMA public TO followup_app;
    END IF;
    FOR t IN
        SELECT tablename, tableowner FROM pg_tables
        WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'
    LOOP
        -- Handed to the application role by the first version of this function: back to
        -- the owner (the migrating role is a member of followup_app, so it may).
        IF t.tableowner = 'followup_app' THEN
            EXECUTE format('ALTER TABLE public.%I OWNER TO %I', t.tablename, current_user);
        END IF;
        IF t.tablename = 'events' THEN
            IF has_table_privilege('followup_app', 'public.events', 'UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') THEN
                REVOKE ALL ON public.events FROM followup_app;
            END IF;
            IF NOT has_table_privilege('followup_app', 'public.events', 'SELECT')
               OR NOT has_table_privilege('followup_app', 'public.events', 'INSERT') THEN
                GRANT SELECT, INSERT ON public.events TO followup_app;
            END IF;
        ELSIF NOT (has_table_privilege('followup_app', format('public.%I', t.tablename), 'SELECT')
               AND has_table_privilege('followup_app', format('public.%I', t.tablename), 'INSERT')
               AND has_table_privilege('followup_app', format('public.%I', t.tablename), 'UPDATE')
               AND has_table_privilege('followup_app', format('public.%I', t.tablename), 'DELETE')) THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO followup_app', t.tablename);
        END IF;
    END LOOP;
    RETURN true;
END;
$$;

SELECT followup_grant_app_role();
