-- The institution's directory (design section 7): users and teams, provisioned by SCIM or
-- seen in tokens. A read model projected from the events of the `directory_user` and
-- `directory_team` streams (libs/readmodel/src/directory.rs), written forwards only (by
-- version) by the API's write-through and by the projector, and rebuilt with the rest.

CREATE TABLE directory_users (
    -- The SCIM id (the stream's id).
    id           UUID PRIMARY KEY,
    institution  TEXT NOT NULL,
    -- The user's id in the service: `user:<user_name>`.
    user_name    TEXT NOT NULL,
    display_name TEXT,
    email        TEXT,
    external_id  TEXT,
    active       BOOLEAN NOT NULL,
    -- `scim` or `token`.
    origin       TEXT NOT NULL,
    deleted      BOOLEAN NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    version      BIGINT NOT NULL
);

-- Lookups by user name, compared as SCIM does: case-insensitively. Not a unique index: the
-- API refuses a second user of a name (409 uniqueness), and a projector must never stop on a
-- row that two racing provisionings left.
CREATE INDEX directory_users_by_name
    ON directory_users (institution, lower(user_name)) WHERE NOT deleted;

CREATE TABLE directory_teams (
    id           UUID PRIMARY KEY,
    institution  TEXT NOT NULL,
    -- The team's id in the service: `team:<team_id>` (the external id, or the SCIM id).
    team_id      TEXT NOT NULL,
    display_name TEXT NOT NULL,
    external_id  TEXT,
    origin       TEXT NOT NULL,
    deleted      BOOLEAN NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    version      BIGINT NOT NULL
);

CREATE INDEX directory_teams_by_team_id ON directory_teams (institution, team_id) WHERE NOT deleted;

-- Who is in which team (SCIM ids), rewritten with the team's row.
CREATE TABLE directory_members (
    team_id UUID NOT NULL,
    user_id UUID NOT NULL,
    PRIMARY KEY (team_id, user_id)
);

CREATE INDEX directory_members_by_user ON directory_members (user_id);
