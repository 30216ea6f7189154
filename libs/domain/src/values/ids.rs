//! Identifiers: of a follow-up, of an institution (the tenant), of users and teams, and
//! [`Principal`], which is either a user or a team.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{shown, ValidationError};

/// Identifies one follow-up, and so its event stream. Random (v4) when a follow-up is created
/// by a user; an adapter may derive it deterministically for follow-ups created by rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FollowUpId(Uuid);

impl FollowUpId {
    /// A new random id.
    pub fn new_v4() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps an existing UUID (from the database or a deterministic derivation).
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID inside, for storage.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for FollowUpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for FollowUpId {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| ValidationError::Malformed {
                field: "id",
                value: shown(s),
                expected: "a UUID such as 67e55044-10b1-426f-9247-bb680e5fe0c8",
            })
    }
}

impl From<Uuid> for FollowUpId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl From<FollowUpId> for Uuid {
    fn from(id: FollowUpId) -> Self {
        id.0
    }
}

/// Checks the rules every text identifier shares: not empty, at most `max` characters, and
/// every character accepted by `allowed` (described in words by `allowed_text`).
fn check_identifier(
    field: &'static str,
    value: &str,
    max: usize,
    allowed: fn(char) -> bool,
    allowed_text: &'static str,
) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    let actual = value.chars().count();
    if actual > max {
        return Err(ValidationError::TooLong { field, max, actual });
    }
    match value.chars().find(|c| !allowed(*c)) {
        Some(found) => Err(ValidationError::InvalidCharacter {
            field,
            found,
            allowed: allowed_text,
        }),
        None => Ok(()),
    }
}

/// The characters a user or team id may contain: anything printable except whitespace and ':'
/// (':' separates the type from the id in `user:<id>`).
fn is_principal_id_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && c != ':'
}

/// Identifies an institution (the tenant: KP, UCL, VIA, …). Every follow-up belongs to exactly
/// one, and users only see their own institution's follow-ups.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstitutionId(String);

impl InstitutionId {
    /// The most characters an institution id may have.
    pub const MAX_CHARS: usize = 32;

    /// Parses an institution id: 1 to 32 characters of `A-Z`, `a-z`, `0-9`, `_` and `-` (it is
    /// used in NATS subjects, so dots, wildcards and spaces are out).
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        check_identifier(
            "institution",
            value,
            Self::MAX_CHARS,
            |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
            "letters A-Z, digits, '_' and '-'",
        )?;
        Ok(Self(value.to_owned()))
    }
}

string_newtype_access!(InstitutionId);

impl FromStr for InstitutionId {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for InstitutionId {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

/// The institutions an installation serves (`FOLLOWUP_INSTITUTIONS`): an inbound message or a
/// token for any other institution is refused, so that no string a sender chooses becomes a
/// tenant. Codes match exactly, case included (`kp` is not `KP`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownInstitutions(std::collections::BTreeSet<InstitutionId>);

impl KnownInstitutions {
    /// The ESAS institutions shipped as the default: the university colleges
    /// (professionshøjskoler) and the academies and schools that use ESAS.
    pub const ESAS: &'static [&'static str] = &[
        "KP", "UCL", "VIA", "UCN", "UCSYD", "Absalon", "PHA", "EAAA", "EASJ", "EASV", "EK", "IBA",
        "Dania", "Zealand", "DMJX", "SIMAC",
    ];

    /// The shipped default, [`Self::ESAS`].
    pub fn esas() -> Self {
        Self(
            Self::ESAS
                .iter()
                .map(|code| InstitutionId(String::from(*code)))
                .collect(),
        )
    }

    /// Parses a comma-separated list of codes (`KP,UCL,VIA`); blanks around codes are
    /// ignored, an empty list is refused.
    pub fn parse_list(list: &str) -> Result<Self, ValidationError> {
        let codes = list
            .split(',')
            .map(str::trim)
            .filter(|code| !code.is_empty())
            .map(InstitutionId::parse)
            .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
        if codes.is_empty() {
            return Err(ValidationError::Empty {
                field: "institutions",
            });
        }
        Ok(Self(codes))
    }

    /// The institution `code` names, if it is one of these.
    pub fn get(&self, code: &str) -> Option<&InstitutionId> {
        self.0.iter().find(|known| known.0 == code)
    }

    /// True when `code` is one of these.
    pub fn contains(&self, code: &str) -> bool {
        self.get(code).is_some()
    }

    /// The codes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &InstitutionId> {
        self.0.iter()
    }
}

impl Default for KnownInstitutions {
    fn default() -> Self {
        Self::esas()
    }
}

impl fmt::Display for KnownInstitutions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<&str> = self.0.iter().map(|i| i.0.as_str()).collect();
        f.write_str(&codes.join(","))
    }
}

/// Identifies a user (the `sub` claim of the caller's token).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// The most characters a user id may have.
    pub const MAX_CHARS: usize = 64;

    /// Parses a user id: 1 to 64 characters, no whitespace, no control characters, no ':'.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        check_identifier(
            "user id",
            value,
            Self::MAX_CHARS,
            is_principal_id_char,
            "free of whitespace, control characters and ':'",
        )?;
        Ok(Self(value.to_owned()))
    }
}

string_newtype_access!(UserId);

impl FromStr for UserId {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for UserId {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

/// Identifies a team (caseworkers who share work, such as an institution's admissions team).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TeamId(String);

impl TeamId {
    /// The most characters a team id may have.
    pub const MAX_CHARS: usize = 64;

    /// Parses a team id: 1 to 64 characters, no whitespace, no control characters, no ':'.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        check_identifier(
            "team id",
            value,
            Self::MAX_CHARS,
            is_principal_id_char,
            "free of whitespace, control characters and ':'",
        )?;
        Ok(Self(value.to_owned()))
    }
}

string_newtype_access!(TeamId);

impl FromStr for TeamId {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for TeamId {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

/// Someone who can own a follow-up or have it shared with them: a user or a team.
///
/// JSON: `{"type":"user","id":"u1"}` or `{"type":"team","id":"admissions"}`. Text (URLs,
/// filters, `Display`/`FromStr`): `user:u1` or `team:admissions`. Ordered and hashable, so it
/// can be a map key (the shares of a follow-up).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "PrincipalJson", into = "PrincipalJson")]
pub enum Principal {
    /// One user.
    User(UserId),
    /// A team; every member acts for it.
    Team(TeamId),
}

impl Principal {
    /// `"user"` or `"team"`: the type name used in JSON and in `user:<id>`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::Team(_) => "team",
        }
    }

    /// The user or team id, without its type.
    pub fn id(&self) -> &str {
        match self {
            Self::User(id) => id.as_str(),
            Self::Team(id) => id.as_str(),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.type_name(), self.id())
    }
}

impl FromStr for Principal {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("user", id)) => Ok(Self::User(UserId::parse(id)?)),
            Some(("team", id)) => Ok(Self::Team(TeamId::parse(id)?)),
            _ => Err(ValidationError::Malformed {
                field: "principal",
                value: shown(s),
                expected: "user:<id> or team:<id>",
            }),
        }
    }
}

/// The JSON shape of a [`Principal`]; serde goes through it so the ids are validated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalJson {
    /// Whether the id is a user's or a team's.
    #[serde(rename = "type")]
    principal_type: PrincipalType,
    /// The user or team id, not yet validated.
    id: String,
}

/// The `type` of a [`PrincipalJson`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PrincipalType {
    /// A user id.
    User,
    /// A team id.
    Team,
}

impl TryFrom<PrincipalJson> for Principal {
    type Error = ValidationError;

    fn try_from(json: PrincipalJson) -> Result<Self, Self::Error> {
        match json.principal_type {
            PrincipalType::User => Ok(Self::User(UserId::parse(&json.id)?)),
            PrincipalType::Team => Ok(Self::Team(TeamId::parse(&json.id)?)),
        }
    }
}

impl From<Principal> for PrincipalJson {
    fn from(principal: Principal) -> Self {
        match principal {
            Principal::User(id) => Self {
                principal_type: PrincipalType::User,
                id: id.into(),
            },
            Principal::Team(id) => Self {
                principal_type: PrincipalType::Team,
                id: id.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_institutions_default_to_the_esas_list_and_match_exactly() {
        let known = KnownInstitutions::default();
        for code in ["KP", "UCL", "VIA", "UCN", "UCSYD", "Absalon"] {
            assert!(known.contains(code), "{code}");
        }
        assert!(!known.contains("kp"), "case matters");
        assert!(!known.contains("0101901234"));
        let list = KnownInstitutions::parse_list(" KP, UCL ,").unwrap();
        assert_eq!(list.to_string(), "KP,UCL");
        assert!(KnownInstitutions::parse_list(" , ").is_err());
        assert!(KnownInstitutions::parse_list("KP,K P").is_err());
    }

    #[test]
    fn institution_id_accepts_1_to_32_letters_digits_dash_and_underscore() {
        assert!(InstitutionId::parse("K").is_ok());
        assert!(InstitutionId::parse("UCL_syd-2").is_ok());
        assert!(InstitutionId::parse(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn institution_id_refuses_empty_too_long_and_other_characters() {
        assert_eq!(InstitutionId::parse("").unwrap_err().code(), "empty");
        assert_eq!(
            InstitutionId::parse(&"a".repeat(33)).unwrap_err().code(),
            "too_long"
        );
        for bad in ["K P", "kp.dk", "kp*", "kø"] {
            assert_eq!(
                InstitutionId::parse(bad).unwrap_err().code(),
                "invalid_character",
                "{bad}"
            );
        }
    }

    #[test]
    fn user_and_team_ids_accept_64_characters_and_refuse_65() {
        assert!(UserId::parse(&"u".repeat(64)).is_ok());
        assert!(TeamId::parse(&"t".repeat(64)).is_ok());
        assert_eq!(
            UserId::parse(&"u".repeat(65)).unwrap_err().code(),
            "too_long"
        );
        assert_eq!(
            TeamId::parse(&"t".repeat(65)).unwrap_err().code(),
            "too_long"
        );
    }

    #[test]
    fn user_ids_refuse_whitespace_control_characters_and_colons() {
        assert_eq!(UserId::parse("").unwrap_err().code(), "empty");
        for bad in ["a b", "a\tb", "a\u{7}b", "user:1"] {
            assert_eq!(
                UserId::parse(bad).unwrap_err().code(),
                "invalid_character",
                "{bad:?}"
            );
        }
        assert!(UserId::parse("søren@kp.dk").is_ok());
    }

    #[test]
    fn principals_serialize_as_type_and_id() {
        let user = Principal::User(UserId::parse("u1").unwrap());
        let team = Principal::Team(TeamId::parse("admissions").unwrap());
        assert_eq!(
            serde_json::to_value(&user).unwrap(),
            serde_json::json!({"type": "user", "id": "u1"})
        );
        assert_eq!(
            serde_json::from_value::<Principal>(
                serde_json::json!({"type": "team", "id": "admissions"})
            )
            .unwrap(),
            team
        );
    }

    #[test]
    fn principals_refuse_invalid_ids_and_unknown_types_on_deserialize() {
        for bad in [
            serde_json::json!({"type": "user", "id": ""}),
            serde_json::json!({"type": "group", "id": "x"}),
            serde_json::json!({"type": "user", "id": "a b"}),
            serde_json::json!({"type": "user", "id": "u1", "extra": 1}),
        ] {
            assert!(
                serde_json::from_value::<Principal>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn principals_read_and_write_as_type_colon_id() {
        let team: Principal = "team:admissions".parse().unwrap();
        assert_eq!(team, Principal::Team(TeamId::parse("admissions").unwrap()));
        assert_eq!(team.to_string(), "team:admissions");
        assert_eq!(
            "user:u1".parse::<Principal>().unwrap().to_string(),
            "user:u1"
        );
        for bad in ["u1", "group:x", "user:", "user:a:b"] {
            assert!(bad.parse::<Principal>().is_err(), "{bad}");
        }
    }

    #[test]
    fn follow_up_ids_read_and_write_as_uuids() {
        let id = FollowUpId::new_v4();
        assert_eq!(id.to_string().parse::<FollowUpId>().unwrap(), id);
        assert_eq!(
            serde_json::to_value(id).unwrap(),
            serde_json::json!(id.as_uuid().to_string())
        );
        assert_eq!(
            "nope".parse::<FollowUpId>().unwrap_err().code(),
            "malformed"
        );
    }

    #[test]
    fn ids_are_validated_when_deserialized() {
        assert!(serde_json::from_value::<InstitutionId>(serde_json::json!("KP")).is_ok());
        assert!(serde_json::from_value::<InstitutionId>(serde_json::json!("K P")).is_err());
        assert!(serde_json::from_value::<UserId>(serde_json::json!("")).is_err());
        assert!(serde_json::from_value::<TeamId>(serde_json::json!("a:b")).is_err());
    }
}
