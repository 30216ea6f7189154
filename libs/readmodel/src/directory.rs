//! The directory's tables (`directory_users`, `directory_teams`, `directory_members`): what
//! the SCIM endpoints list and filter, the pickers search, and the API checks principals and
//! finds display names and team members in.
//!
//! Rows are written forwards only (by version), by the API after each directory command and
//! by the projector (and a rebuild) from the events, so either may come first and a repeat
//! changes nothing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use followup_domain::directory::{DirectoryTeam, DirectoryUser};
use followup_domain::{InstitutionId, Principal, TeamId, UserId};
use serde::Serialize;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::error::ReadError;
use crate::read_model::ReadModel;

/// A directory user as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    /// Its SCIM id.
    pub id: Uuid,
    /// Its id in the service (`user:<user_name>`).
    pub user_name: String,
    /// The name people see.
    pub display_name: Option<String>,
    /// Its e-mail address.
    pub email: Option<String>,
    /// The provider's id of it.
    pub external_id: Option<String>,
    /// False once deactivated.
    pub active: bool,
    /// `scim` or `token`.
    pub origin: String,
    /// When it was provisioned.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Its stream's version.
    pub version: i64,
}

impl From<&DirectoryUser> for UserRow {
    /// The row a directory user is written as.
    fn from(user: &DirectoryUser) -> Self {
        let a = &user.attributes;
        Self {
            id: user.id.0,
            user_name: a.user_name.as_str().to_owned(),
            display_name: a.display_name.clone(),
            email: a.email.clone(),
            external_id: a.external_id.clone(),
            active: a.active,
            origin: user.origin.as_str().to_owned(),
            created_at: user.created_at,
            updated_at: user.updated_at,
            version: i64::try_from(user.version).unwrap_or(i64::MAX),
        }
    }
}

/// A member of a listed team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberRow {
    /// The member's SCIM id.
    pub id: Uuid,
    /// Its user name.
    pub user_name: String,
    /// Its display name.
    pub display_name: Option<String>,
}

/// A directory team as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TeamRow {
    /// Its SCIM id.
    pub id: Uuid,
    /// Its id in the service (`team:<team_id>`).
    pub team_id: String,
    /// The name people see.
    pub display_name: String,
    /// The provider's id of it.
    pub external_id: Option<String>,
    /// `scim` or `token`.
    pub origin: String,
    /// Its members.
    pub members: Vec<MemberRow>,
    /// When it was provisioned.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Its stream's version.
    pub version: i64,
}

/// Which users to list.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Exactly this user name (case-insensitive, as SCIM's `userName eq`).
    pub user_name: Option<String>,
    /// Exactly this external id.
    pub external_id: Option<String>,
    /// Text in the user name, display name or e-mail (a picker's search).
    pub q: Option<String>,
    /// Active users only (pickers).
    pub active_only: bool,
    /// Provisioned by SCIM only (what the SCIM client sees; pickers where SCIM provisions).
    pub scim_only: bool,
}

/// Which teams to list.
#[derive(Debug, Clone, Default)]
pub struct TeamFilter {
    /// Exactly this display name (SCIM's `displayName eq`).
    pub display_name: Option<String>,
    /// Exactly this external id.
    pub external_id: Option<String>,
    /// Text in the display name or team id.
    pub q: Option<String>,
    /// Exactly this team (its SCIM id).
    pub id: Option<Uuid>,
    /// Provisioned by SCIM only.
    pub scim_only: bool,
}

/// `text` as a LIKE pattern that matches it anywhere, its wildcards escaped.
fn contains(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn user_row(row: &sqlx::postgres::PgRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: row.try_get("id")?,
        user_name: row.try_get("user_name")?,
        display_name: row.try_get("display_name")?,
        email: row.try_get("email")?,
        external_id: row.try_get("external_id")?,
        active: row.try_get("active")?,
        origin: row.try_get("origin")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
    })
}

impl ReadModel {
    /// The users of `institution` that `filter` lets through, by user name: the page from
    /// `offset` of at most `limit`, and how many there are in all.
    pub async fn directory_users(
        &self,
        institution: &InstitutionId,
        filter: &UserFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<UserRow>, i64), ReadError> {
        let rows = sqlx::query(
            "SELECT *, count(*) OVER () AS total FROM directory_users
             WHERE institution = $1 AND NOT deleted
               AND ($2::text IS NULL OR lower(user_name) = lower($2))
               AND ($3::text IS NULL OR external_id = $3)
               AND ($4::text IS NULL OR user_name ILIKE $4 OR display_name ILIKE $4 OR email ILIKE $4)
               AND (active OR NOT $5)
               AND (origin = 'scim' OR NOT $8)
             ORDER BY lower(user_name), id
             OFFSET $6 LIMIT $7",
        )
        .bind(institution.as_str())
        .bind(&filter.user_name)
        .bind(&filter.external_id)
        .bind(filter.q.as_deref().map(contains))
        .bind(filter.active_only)
        .bind(offset)
        .bind(limit)
        .bind(filter.scim_only)
        .fetch_all(self.pool())
        .await?;
        let total = match rows.first() {
            Some(row) => row.try_get("total")?,
            None => self.count_users(institution, filter).await?,
        };
        let users = rows.iter().map(user_row).collect::<Result<_, _>>()?;
        Ok((users, total))
    }

    /// How many users `filter` lets through (for a page past the end).
    async fn count_users(
        &self,
        institution: &InstitutionId,
        filter: &UserFilter,
    ) -> Result<i64, ReadError> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM directory_users
             WHERE institution = $1 AND NOT deleted
               AND ($2::text IS NULL OR lower(user_name) = lower($2))
               AND ($3::text IS NULL OR external_id = $3)
               AND ($4::text IS NULL OR user_name ILIKE $4 OR display_name ILIKE $4 OR email ILIKE $4)
               AND (active OR NOT $5)
               AND (origin = 'scim' OR NOT $6)",
        )
        .bind(institution.as_str())
        .bind(&filter.user_name)
        .bind(&filter.external_id)
        .bind(filter.q.as_deref().map(contains))
        .bind(filter.active_only)
        .bind(filter.scim_only)
        .fetch_one(self.pool())
        .await?)
    }

    /// The teams of `institution` that `filter` lets through, by display name, with their
    /// members: the page from `offset` of at most `limit`, and how many there are in all.
    pub async fn directory_teams(
        &self,
        institution: &InstitutionId,
        filter: &TeamFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<TeamRow>, i64), ReadError> {
        let where_clause = "institution = $1 AND NOT deleted
               AND ($2::text IS NULL OR display_name = $2)
               AND ($3::text IS NULL OR external_id = $3)
               AND ($4::text IS NULL OR display_name ILIKE $4 OR team_id ILIKE $4)
               AND (origin = 'scim' OR NOT $5)
               AND ($6::uuid IS NULL OR id = $6)";
        let rows = sqlx::query(&format!(
            "SELECT *, count(*) OVER () AS total FROM directory_teams WHERE {where_clause}
             ORDER BY lower(display_name), id OFFSET $7 LIMIT $8"
        ))
        .bind(institution.as_str())
        .bind(&filter.display_name)
        .bind(&filter.external_id)
        .bind(filter.q.as_deref().map(contains))
        .bind(filter.scim_only)
        .bind(filter.id)
        .bind(offset)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let total: i64 = match rows.first() {
            Some(row) => row.try_get("total")?,
            None => {
                sqlx::query_scalar(&format!(
                    "SELECT count(*) FROM directory_teams WHERE {where_clause}"
                ))
                .bind(institution.as_str())
                .bind(&filter.display_name)
                .bind(&filter.external_id)
                .bind(filter.q.as_deref().map(contains))
                .bind(filter.scim_only)
                .bind(filter.id)
                .fetch_one(self.pool())
                .await?
            }
        };
        let ids: Vec<Uuid> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        let mut members: HashMap<Uuid, Vec<MemberRow>> = HashMap::new();
        for row in sqlx::query(
            "SELECT m.team_id, u.id, u.user_name, u.display_name
             FROM directory_members m JOIN directory_users u ON u.id = m.user_id
             WHERE m.team_id = ANY($1) AND NOT u.deleted
             ORDER BY lower(u.user_name)",
        )
        .bind(&ids)
        .fetch_all(self.pool())
        .await?
        {
            members
                .entry(row.try_get("team_id")?)
                .or_default()
                .push(MemberRow {
                    id: row.try_get("id")?,
                    user_name: row.try_get("user_name")?,
                    display_name: row.try_get("display_name")?,
                });
        }
        let teams = rows
            .iter()
            .map(|row| {
                let id: Uuid = row.try_get("id")?;
                Ok(TeamRow {
                    id,
                    team_id: row.try_get("team_id")?,
                    display_name: row.try_get("display_name")?,
                    external_id: row.try_get("external_id")?,
                    origin: row.try_get("origin")?,
                    members: members.remove(&id).unwrap_or_default(),
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    version: row.try_get("version")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok((teams, total))
    }

    /// True when `institution`'s directory is provisioned by its identity provider (SCIM):
    /// then only the principals it knows may be given follow-ups.
    pub async fn has_directory(&self, institution: &InstitutionId) -> Result<bool, ReadError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM directory_users
                            WHERE institution = $1 AND origin = 'scim' AND NOT deleted)
                 OR EXISTS (SELECT 1 FROM directory_teams
                            WHERE institution = $1 AND origin = 'scim' AND NOT deleted)",
        )
        .bind(institution.as_str())
        .fetch_one(self.pool())
        .await?)
    }

    /// True when `institution`'s directory has `principal` as SCIM provisioned it (an active
    /// user, or a team).
    pub async fn knows(
        &self,
        institution: &InstitutionId,
        principal: &Principal,
    ) -> Result<bool, ReadError> {
        let sql = match principal {
            Principal::User(_) => {
                "SELECT EXISTS (SELECT 1 FROM directory_users WHERE institution = $1
                 AND lower(user_name) = lower($2) AND active AND NOT deleted AND origin = 'scim')"
            }
            Principal::Team(_) => {
                "SELECT EXISTS (SELECT 1 FROM directory_teams WHERE institution = $1
                 AND team_id = $2 AND NOT deleted AND origin = 'scim')"
            }
        };
        Ok(sqlx::query_scalar(sql)
            .bind(institution.as_str())
            .bind(principal.id())
            .fetch_one(self.pool())
            .await?)
    }

    /// The teams the directory says `user` is a member of.
    pub async fn teams_of(
        &self,
        institution: &InstitutionId,
        user: &UserId,
    ) -> Result<Vec<TeamId>, ReadError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT t.team_id FROM directory_users u
             JOIN directory_members m ON m.user_id = u.id
             JOIN directory_teams t ON t.id = m.team_id AND NOT t.deleted
             WHERE u.institution = $1 AND lower(u.user_name) = lower($2) AND NOT u.deleted
             ORDER BY t.team_id",
        )
        .bind(institution.as_str())
        .bind(user.as_str())
        .fetch_all(self.pool())
        .await?;
        Ok(ids.iter().filter_map(|id| TeamId::parse(id).ok()).collect())
    }

    /// The display names the directory has for `principals` (`user:<id>` / `team:<id>` →
    /// name); principals without one are left out.
    pub async fn display_names(
        &self,
        institution: &InstitutionId,
        principals: &[Principal],
    ) -> Result<HashMap<String, String>, ReadError> {
        let (mut users, mut teams) = (Vec::new(), Vec::new());
        for principal in principals {
            match principal {
                Principal::User(user) => users.push(user.as_str().to_lowercase()),
                Principal::Team(team) => teams.push(team.as_str().to_owned()),
            }
        }
        let mut names = HashMap::new();
        if principals.is_empty() {
            return Ok(names);
        }
        let rows = sqlx::query(
            "SELECT 'user:' || user_name AS principal, display_name FROM directory_users
             WHERE institution = $1 AND lower(user_name) = ANY($2) AND NOT deleted
               AND display_name IS NOT NULL
             UNION ALL
             SELECT 'team:' || team_id, display_name FROM directory_teams
             WHERE institution = $1 AND team_id = ANY($3) AND NOT deleted",
        )
        .bind(institution.as_str())
        .bind(&users)
        .bind(&teams)
        .fetch_all(self.pool())
        .await?;
        for row in rows {
            names.insert(row.try_get("principal")?, row.try_get("display_name")?);
        }
        Ok(names)
    }

    /// Writes `users` and `teams` (forwards only), as the API does after a directory command.
    pub async fn write_directory(
        &self,
        users: &[DirectoryUser],
        teams: &[DirectoryTeam],
    ) -> Result<(), ReadError> {
        let mut conn = self.pool().acquire().await?;
        upsert_directory(&mut conn, users, teams).await
    }
}

/// Writes directory rows on `conn`, each only when it is newer than the stored one; a team's
/// members are rewritten with its row.
pub(crate) async fn upsert_directory(
    conn: &mut PgConnection,
    users: &[DirectoryUser],
    teams: &[DirectoryTeam],
) -> Result<(), ReadError> {
    for user in users {
        let a = &user.attributes;
        sqlx::query(
            "INSERT INTO directory_users (id, institution, user_name, display_name, email,
                 external_id, active, origin, deleted, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET user_name = EXCLUDED.user_name,
                 display_name = EXCLUDED.display_name, email = EXCLUDED.email,
                 external_id = EXCLUDED.external_id, active = EXCLUDED.active,
                 deleted = EXCLUDED.deleted, updated_at = EXCLUDED.updated_at,
                 version = EXCLUDED.version
             WHERE directory_users.version < EXCLUDED.version",
        )
        .bind(user.id.0)
        .bind(user.institution.as_str())
        .bind(a.user_name.as_str())
        .bind(&a.display_name)
        .bind(&a.email)
        .bind(&a.external_id)
        .bind(a.active)
        .bind(user.origin.as_str())
        .bind(user.deleted)
        .bind(user.created_at)
        .bind(user.updated_at)
        .bind(i64::try_from(user.version).unwrap_or(i64::MAX))
        .execute(&mut *conn)
        .await?;
    }
    for team in teams {
        let Some(team_id) = team.team_id() else {
            continue;
        };
        let written = sqlx::query(
            "INSERT INTO directory_teams (id, institution, team_id, display_name, external_id,
                 origin, deleted, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET team_id = EXCLUDED.team_id,
                 display_name = EXCLUDED.display_name, external_id = EXCLUDED.external_id,
                 deleted = EXCLUDED.deleted, updated_at = EXCLUDED.updated_at,
                 version = EXCLUDED.version
             WHERE directory_teams.version < EXCLUDED.version",
        )
        .bind(team.id.0)
        .bind(team.institution.as_str())
        .bind(team_id.as_str())
        .bind(&team.attributes.display_name)
        .bind(&team.attributes.external_id)
        .bind(team.origin.as_str())
        .bind(team.deleted)
        .bind(team.created_at)
        .bind(team.updated_at)
        .bind(i64::try_from(team.version).unwrap_or(i64::MAX))
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if written == 0 {
            continue;
        }
        sqlx::query("DELETE FROM directory_members WHERE team_id = $1")
            .bind(team.id.0)
            .execute(&mut *conn)
            .await?;
        let members: Vec<Uuid> = team.members.iter().map(|m| m.0).collect();
        sqlx::query(
            "INSERT INTO directory_members (team_id, user_id) SELECT $1, unnest($2::uuid[])",
        )
        .bind(team.id.0)
        .bind(&members)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
