//! The institution's directory (design section 7): its users and teams, provisioned by the
//! identity provider over SCIM 2.0, or learnt from the tokens users sign in with. Each user
//! and each team is an aggregate of its own, stored as events like a follow-up, so the
//! directory has a history and its tables can be rebuilt.
//!
//! A directory user is the principal `user:<user name>` (the SCIM `userName`, which the
//! service's user claim must carry); a team is `team:<external id>` (the SCIM `externalId`,
//! which Entra ID sets to the group's object id, as its `groups` claim carries it), or
//! `team:<id>` when the provider sends no external id.
//!
//! # Layout
//! - [`DirectoryId`]: the SCIM resource id of a user or team (a UUID, the stream's id).
//! - [`UserAttributes`], [`DirectoryUser`], [`UserCommand`], [`UserEvent`].
//! - [`TeamAttributes`], [`DirectoryTeam`], [`TeamCommand`], [`TeamEvent`].
//! - [`DirectoryError`]: why a change is refused.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::text::one_line;
use crate::values::{shown, InstitutionId, TeamId, UserId, ValidationError};

/// The SCIM id of a directory user or team, and its stream's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DirectoryId(pub Uuid);

impl DirectoryId {
    /// A new random id.
    pub fn new_v4() -> Self {
        Self(Uuid::new_v4())
    }

    /// The id of what the provider calls `text` (a UUID), if it is one.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        Uuid::parse_str(text)
            .map(Self)
            .map_err(|_| ValidationError::Malformed {
                field: "id",
                value: shown(text),
                expected: "a UUID such as 67e55044-10b1-426f-9247-bb680e5fe0c8",
            })
    }
}

impl fmt::Display for DirectoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The most characters a display name, e-mail or external id may have.
pub const MAX_TEXT: usize = 256;

/// A display name, e-mail address or external id: one line, at most [`MAX_TEXT`]
/// characters, no CPR number; blank is none.
pub fn optional_text(
    field: &'static str,
    text: Option<&str>,
) -> Result<Option<String>, ValidationError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    one_line(field, text, MAX_TEXT)?;
    crate::gdpr::check_user_text(field, text)?;
    Ok(Some(text.to_owned()))
}

/// How a directory entry came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Provisioned by the identity provider over SCIM.
    Scim,
    /// Seen in a valid token (an institution without SCIM provisioning).
    Token,
}

impl Origin {
    /// `scim` or `token`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scim => "scim",
            Self::Token => "token",
        }
    }
}

/// What the directory knows of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAttributes {
    /// The user's id in the service (`user:<user name>`), unique in the institution.
    pub user_name: UserId,
    /// The name people see ("Anna Jensen").
    pub display_name: Option<String>,
    /// The primary e-mail address.
    pub email: Option<String>,
    /// The provider's own id of the user.
    pub external_id: Option<String>,
    /// False once the provider deactivated the user: not offered in pickers any more.
    pub active: bool,
}

/// A directory user as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    /// Its SCIM id.
    pub id: DirectoryId,
    /// Its institution.
    pub institution: InstitutionId,
    /// How it came to be.
    pub origin: Origin,
    /// What is known of it.
    pub attributes: UserAttributes,
    /// When it was provisioned.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Deleted by the provider: its id is no longer found, its history stays.
    pub deleted: bool,
    /// How many events its stream has.
    pub version: u64,
}

/// What someone asks of a directory user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Provision it (the stream must be empty).
    Provision {
        /// Its id.
        id: DirectoryId,
        /// Its institution.
        institution: InstitutionId,
        /// How it comes to be.
        origin: Origin,
        /// What is known of it.
        attributes: UserAttributes,
    },
    /// Replace what is known of it (SCIM PUT and PATCH); the same again changes nothing.
    Replace(UserAttributes),
    /// Delete it (a repeat changes nothing).
    Delete,
}

/// What happened to a directory user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserEvent {
    /// It was provisioned.
    UserProvisioned {
        /// Its id.
        id: DirectoryId,
        /// Its institution.
        institution: InstitutionId,
        /// How.
        origin: Origin,
        /// What is known of it.
        attributes: UserAttributes,
        /// When.
        at: DateTime<Utc>,
    },
    /// What is known of it changed.
    UserChanged {
        /// What is known of it now.
        attributes: UserAttributes,
        /// When.
        at: DateTime<Utc>,
    },
    /// It was deleted.
    UserDeleted {
        /// When.
        at: DateTime<Utc>,
    },
}

/// What the directory knows of a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamAttributes {
    /// The name people see ("Optagelse").
    pub display_name: String,
    /// The provider's id of the group (the id tokens carry in their groups claim).
    pub external_id: Option<String>,
}

/// A directory team as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryTeam {
    /// Its SCIM id.
    pub id: DirectoryId,
    /// Its institution.
    pub institution: InstitutionId,
    /// How it came to be.
    pub origin: Origin,
    /// What is known of it.
    pub attributes: TeamAttributes,
    /// Its members (directory users' ids).
    pub members: BTreeSet<DirectoryId>,
    /// When it was provisioned.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Deleted by the provider.
    pub deleted: bool,
    /// How many events its stream has.
    pub version: u64,
}

impl DirectoryTeam {
    /// The team id it is known by in follow-ups: its external id, or else its SCIM id.
    pub fn team_id(&self) -> Option<TeamId> {
        team_id_of(self.id, &self.attributes)
    }
}

/// The team id of a team with `id` and `attributes` (`None` if the external id cannot be one).
pub fn team_id_of(id: DirectoryId, attributes: &TeamAttributes) -> Option<TeamId> {
    match &attributes.external_id {
        Some(external) => TeamId::parse(external).ok(),
        None => TeamId::parse(&id.to_string()).ok(),
    }
}

/// What someone asks of a directory team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamCommand {
    /// Provision it (the stream must be empty).
    Provision {
        /// Its id.
        id: DirectoryId,
        /// Its institution.
        institution: InstitutionId,
        /// How.
        origin: Origin,
        /// What is known of it.
        attributes: TeamAttributes,
        /// Its members.
        members: BTreeSet<DirectoryId>,
    },
    /// Replace its name and external id (`None`: keep them) and, when given, its members.
    Replace {
        /// Its name and external id now.
        attributes: Option<TeamAttributes>,
        /// Its members now.
        members: Option<BTreeSet<DirectoryId>>,
    },
    /// Add members (those already in change nothing).
    AddMembers(BTreeSet<DirectoryId>),
    /// Remove members (those not in change nothing).
    RemoveMembers(BTreeSet<DirectoryId>),
    /// Delete it.
    Delete,
}

/// What happened to a directory team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TeamEvent {
    /// It was provisioned.
    TeamProvisioned {
        /// Its id.
        id: DirectoryId,
        /// Its institution.
        institution: InstitutionId,
        /// How.
        origin: Origin,
        /// What is known of it.
        attributes: TeamAttributes,
        /// Its members.
        members: BTreeSet<DirectoryId>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Its name or external id changed.
    TeamChanged {
        /// What is known of it now.
        attributes: TeamAttributes,
        /// When.
        at: DateTime<Utc>,
    },
    /// Members joined it.
    MembersAdded {
        /// Who.
        members: BTreeSet<DirectoryId>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Members left it.
    MembersRemoved {
        /// Who.
        members: BTreeSet<DirectoryId>,
        /// When.
        at: DateTime<Utc>,
    },
    /// It was deleted.
    TeamDeleted {
        /// When.
        at: DateTime<Utc>,
    },
}

/// Why a directory change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// A change to a user or team that does not exist (or was deleted).
    #[error("no such user or group")]
    NotFound,
    /// A provisioning with an id that is taken.
    #[error("{id} exists already")]
    AlreadyExists {
        /// The id.
        id: DirectoryId,
    },
}

/// The events `command` causes on the user in `state`, at `now`.
pub fn decide_user(
    state: &Option<DirectoryUser>,
    command: UserCommand,
    now: DateTime<Utc>,
) -> Result<Vec<UserEvent>, DirectoryError> {
    match (state, command) {
        (
            None,
            UserCommand::Provision {
                id,
                institution,
                origin,
                attributes,
            },
        ) => Ok(vec![UserEvent::UserProvisioned {
            id,
            institution,
            origin,
            attributes,
            at: now,
        }]),
        (Some(user), UserCommand::Provision { .. }) => {
            Err(DirectoryError::AlreadyExists { id: user.id })
        }
        (None, _) => Err(DirectoryError::NotFound),
        (Some(user), _) if user.deleted => Err(DirectoryError::NotFound),
        (Some(user), UserCommand::Replace(attributes)) if user.attributes == attributes => {
            Ok(vec![])
        }
        (Some(_), UserCommand::Replace(attributes)) => Ok(vec![UserEvent::UserChanged {
            attributes,
            at: now,
        }]),
        (Some(_), UserCommand::Delete) => Ok(vec![UserEvent::UserDeleted { at: now }]),
    }
}

/// The user after `event`.
pub fn evolve_user(state: Option<DirectoryUser>, event: &UserEvent) -> Option<DirectoryUser> {
    match (state, event) {
        (
            None,
            UserEvent::UserProvisioned {
                id,
                institution,
                origin,
                attributes,
                at,
            },
        ) => Some(DirectoryUser {
            id: *id,
            institution: institution.clone(),
            origin: *origin,
            attributes: attributes.clone(),
            created_at: *at,
            updated_at: *at,
            deleted: false,
            version: 1,
        }),
        (Some(mut user), UserEvent::UserChanged { attributes, at }) => {
            user.attributes = attributes.clone();
            user.updated_at = *at;
            user.version += 1;
            Some(user)
        }
        (Some(mut user), UserEvent::UserDeleted { at }) => {
            user.deleted = true;
            user.attributes.active = false;
            user.updated_at = *at;
            user.version += 1;
            Some(user)
        }
        // Only a corrupt stream gets here: the state stays as it was.
        (state, _) => state,
    }
}

/// The events `command` causes on the team in `state`, at `now`.
pub fn decide_team(
    state: &Option<DirectoryTeam>,
    command: TeamCommand,
    now: DateTime<Utc>,
) -> Result<Vec<TeamEvent>, DirectoryError> {
    let (team, command) = match (state, command) {
        (
            None,
            TeamCommand::Provision {
                id,
                institution,
                origin,
                attributes,
                members,
            },
        ) => {
            return Ok(vec![TeamEvent::TeamProvisioned {
                id,
                institution,
                origin,
                attributes,
                members,
                at: now,
            }])
        }
        (Some(team), TeamCommand::Provision { .. }) => {
            return Err(DirectoryError::AlreadyExists { id: team.id })
        }
        (None, _) => return Err(DirectoryError::NotFound),
        (Some(team), _) if team.deleted => return Err(DirectoryError::NotFound),
        (Some(team), command) => (team, command),
    };
    let added = |wanted: &BTreeSet<DirectoryId>| -> BTreeSet<DirectoryId> {
        wanted.difference(&team.members).copied().collect()
    };
    let removed = |gone: &BTreeSet<DirectoryId>| -> BTreeSet<DirectoryId> {
        gone.intersection(&team.members).copied().collect()
    };
    let mut events = Vec::new();
    match command {
        TeamCommand::Provision { .. } => unreachable!("handled above"),
        TeamCommand::Replace {
            attributes,
            members,
        } => {
            if let Some(attributes) = attributes.filter(|a| *a != team.attributes) {
                events.push(TeamEvent::TeamChanged {
                    attributes,
                    at: now,
                });
            }
            if let Some(members) = members {
                let joining = added(&members);
                let leaving: BTreeSet<_> = team.members.difference(&members).copied().collect();
                if !joining.is_empty() {
                    events.push(TeamEvent::MembersAdded {
                        members: joining,
                        at: now,
                    });
                }
                if !leaving.is_empty() {
                    events.push(TeamEvent::MembersRemoved {
                        members: leaving,
                        at: now,
                    });
                }
            }
        }
        TeamCommand::AddMembers(members) => {
            let joining = added(&members);
            if !joining.is_empty() {
                events.push(TeamEvent::MembersAdded {
                    members: joining,
                    at: now,
                });
            }
        }
        TeamCommand::RemoveMembers(members) => {
            let leaving = removed(&members);
            if !leaving.is_empty() {
                events.push(TeamEvent::MembersRemoved {
                    members: leaving,
                    at: now,
                });
            }
        }
        TeamCommand::Delete => events.push(TeamEvent::TeamDeleted { at: now }),
    }
    Ok(events)
}

/// The team after `event`.
pub fn evolve_team(state: Option<DirectoryTeam>, event: &TeamEvent) -> Option<DirectoryTeam> {
    let mut team = match (state, event) {
        (
            None,
            TeamEvent::TeamProvisioned {
                id,
                institution,
                origin,
                attributes,
                members,
                at,
            },
        ) => {
            return Some(DirectoryTeam {
                id: *id,
                institution: institution.clone(),
                origin: *origin,
                attributes: attributes.clone(),
                members: members.clone(),
                created_at: *at,
                updated_at: *at,
                deleted: false,
                version: 1,
            })
        }
        (Some(team), _) => team,
        // Only a corrupt stream gets here.
        (None, _) => return None,
    };
    match event {
        // Only a corrupt stream provisions twice: the state stays as it was.
        TeamEvent::TeamProvisioned { .. } => return Some(team),
        TeamEvent::TeamChanged { attributes, at } => {
            team.attributes = attributes.clone();
            team.updated_at = *at;
        }
        TeamEvent::MembersAdded { members, at } => {
            team.members.extend(members.iter().copied());
            team.updated_at = *at;
        }
        TeamEvent::MembersRemoved { members, at } => {
            team.members.retain(|m| !members.contains(m));
            team.updated_at = *at;
        }
        TeamEvent::TeamDeleted { at } => {
            team.deleted = true;
            team.members.clear();
            team.updated_at = *at;
        }
    }
    team.version += 1;
    Some(team)
}

impl UserEvent {
    /// The snake_case event type, as stored.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::UserProvisioned { .. } => "user_provisioned",
            Self::UserChanged { .. } => "user_changed",
            Self::UserDeleted { .. } => "user_deleted",
        }
    }
}

impl TeamEvent {
    /// The snake_case event type, as stored.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::TeamProvisioned { .. } => "team_provisioned",
            Self::TeamChanged { .. } => "team_changed",
            Self::MembersAdded { .. } => "members_added",
            Self::MembersRemoved { .. } => "members_removed",
            Self::TeamDeleted { .. } => "team_deleted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-06T09:00:00Z".parse().unwrap()
    }

    fn anna() -> UserAttributes {
        UserAttributes {
            user_name: UserId::parse("anna@kp.dk").unwrap(),
            display_name: Some("Anna Jensen".into()),
            email: Some("anna@kp.dk".into()),
            external_id: None,
            active: true,
        }
    }

    #[test]
    fn a_user_is_provisioned_changed_once_per_difference_and_deleted() {
        let id = DirectoryId::new_v4();
        let provision = UserCommand::Provision {
            id,
            institution: InstitutionId::parse("KP").unwrap(),
            origin: Origin::Scim,
            attributes: anna(),
        };
        let events = decide_user(&None, provision.clone(), now()).unwrap();
        let user = events.iter().fold(None, evolve_user);
        assert!(matches!(
            decide_user(&user, provision, now()),
            Err(DirectoryError::AlreadyExists { .. })
        ));
        assert!(decide_user(&user, UserCommand::Replace(anna()), now())
            .unwrap()
            .is_empty());
        let inactive = UserAttributes {
            active: false,
            ..anna()
        };
        let changed = decide_user(&user, UserCommand::Replace(inactive), now()).unwrap();
        let user = changed.iter().fold(user, evolve_user);
        assert!(!user.as_ref().unwrap().attributes.active);
        let deleted = decide_user(&user, UserCommand::Delete, now()).unwrap();
        let user = deleted.iter().fold(user, evolve_user);
        assert!(user.as_ref().unwrap().deleted);
        assert_eq!(user.as_ref().unwrap().version, 3);
        assert_eq!(
            decide_user(&user, UserCommand::Delete, now()),
            Err(DirectoryError::NotFound)
        );
    }

    #[test]
    fn replacing_a_teams_members_records_who_joined_and_who_left() {
        let (a, b, c) = (
            DirectoryId::new_v4(),
            DirectoryId::new_v4(),
            DirectoryId::new_v4(),
        );
        let provision = TeamCommand::Provision {
            id: DirectoryId::new_v4(),
            institution: InstitutionId::parse("KP").unwrap(),
            origin: Origin::Scim,
            attributes: TeamAttributes {
                display_name: "Optagelse".into(),
                external_id: Some("admissions".into()),
            },
            members: [a, b].into(),
        };
        let team = decide_team(&None, provision, now())
            .unwrap()
            .iter()
            .fold(None, evolve_team);
        assert_eq!(
            team.as_ref().unwrap().team_id().unwrap().as_str(),
            "admissions"
        );
        let events = decide_team(
            &team,
            TeamCommand::Replace {
                attributes: None,
                members: Some([b, c].into()),
            },
            now(),
        )
        .unwrap();
        assert_eq!(
            events,
            vec![
                TeamEvent::MembersAdded {
                    members: [c].into(),
                    at: now()
                },
                TeamEvent::MembersRemoved {
                    members: [a].into(),
                    at: now()
                },
            ]
        );
        let team = events.iter().fold(team, evolve_team);
        assert_eq!(team.as_ref().unwrap().members, [b, c].into());
        assert!(
            decide_team(&team, TeamCommand::AddMembers([b].into()), now())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_display_name_with_a_cpr_number_is_refused() {
        let error = optional_text("displayName", Some("Anna 010203-1234")).unwrap_err();
        assert_eq!(error.code(), "gdpr_cpr_number");
        assert_eq!(optional_text("displayName", Some("  ")).unwrap(), None);
    }
}
