//! Whose personal data a follow-up holds ([`DataSubject`]), why it was erased or is kept
//! ([`Reason`], [`ErasureCause`]), and the text that replaces erased data ([`ERASED`]).
//!
//! A follow-up is about at most one person, its *data subject*: the student, applicant or guest
//! student it concerns, or, for a follow-up a user wrote about no such person, that user. The
//! store encrypts the follow-up's personal fields with a key of its own, tagged with the data
//! subject; erasing the subject (GDPR art. 17) or the end of the follow-up's retention destroys
//! the key, and the follow-up stays, anonymised (see `docs/operations.md`, "Erasure").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::text::{one_line, record_id};
use super::{shown, Regarding, UserId, ValidationError};
use crate::gdpr;

/// What erased personal data reads as, everywhere: subject, description, a record's id.
pub const ERASED: &str = "[slettet]";

/// The kinds of person a follow-up can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectType {
    /// A student (`student_id` in ESAS).
    Student,
    /// An applicant (`applicant_id`).
    Applicant,
    /// A guest student from another institution (`guest_student_id`).
    GuestStudent,
    /// A user of this service, for the texts they wrote about no one else.
    User,
}

impl SubjectType {
    /// Every type, as written in `<type>:<id>`.
    pub const ALL: [SubjectType; 4] = [
        Self::Student,
        Self::Applicant,
        Self::GuestStudent,
        Self::User,
    ];

    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Student => "student",
            Self::Applicant => "applicant",
            Self::GuestStudent => "guest_student",
            Self::User => "user",
        }
    }

    /// The type of `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for SubjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The person a follow-up's personal data is about. JSON `{"type":"student","id":"S-1"}`,
/// as text `student:S-1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "DataSubjectJson", into = "DataSubjectJson")]
pub struct DataSubject {
    /// What kind of person.
    r#type: SubjectType,
    /// Their id in ESAS (or the user's id): 1 to 100 characters, no control characters.
    id: String,
}

impl DataSubject {
    /// Parses a data subject from its type name and id.
    pub fn parse(subject_type: &str, id: &str) -> Result<Self, ValidationError> {
        let Some(r#type) = SubjectType::parse(subject_type) else {
            return Err(ValidationError::Malformed {
                field: "data_subject.type",
                value: shown(subject_type),
                expected: "student, applicant, guest_student or user",
            });
        };
        // The same limits as a record id in a regarding.
        record_id("data_subject.id", id)?;
        Ok(Self {
            r#type,
            id: id.to_owned(),
        })
    }

    /// The data subject a regarding names, when it names a person.
    pub fn of_regarding(regarding: &Regarding) -> Option<Self> {
        let r#type = SubjectType::parse(regarding.regarding_type().as_str())?;
        (r#type != SubjectType::User).then(|| Self {
            r#type,
            id: regarding.id().to_owned(),
        })
    }

    /// A user as the data subject of their own texts.
    pub fn user(user: &UserId) -> Self {
        Self {
            r#type: SubjectType::User,
            id: user.as_str().to_owned(),
        }
    }

    /// What kind of person.
    pub fn subject_type(&self) -> SubjectType {
        self.r#type
    }

    /// Their id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for DataSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.r#type, self.id)
    }
}

impl FromStr for DataSubject {
    type Err = ValidationError;

    /// Reads `<type>:<id>`, such as `student:S-1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((subject_type, id)) => Self::parse(subject_type, id),
            None => Err(ValidationError::Malformed {
                field: "data_subject",
                value: shown(s),
                expected: "<type>:<id>, such as student:S-1",
            }),
        }
    }
}

/// The JSON shape of a [`DataSubject`], validated on the way in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataSubjectJson {
    /// The type name.
    #[serde(rename = "type")]
    subject_type: String,
    /// The id.
    id: String,
}

impl TryFrom<DataSubjectJson> for DataSubject {
    type Error = ValidationError;

    fn try_from(json: DataSubjectJson) -> Result<Self, Self::Error> {
        Self::parse(&json.subject_type, &json.id)
    }
}

impl From<DataSubject> for DataSubjectJson {
    fn from(subject: DataSubject) -> Self {
        Self {
            subject_type: subject.r#type.as_str().to_owned(),
            id: subject.id,
        }
    }
}

/// Why something was erased, or is kept under a legal hold: one line of 1 to 300
/// characters, guarded like every user text (no CPR number, no sensitive data), since it is
/// kept for ever.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reason(String);

impl Reason {
    /// The most characters a reason may have.
    pub const MAX_CHARS: usize = 300;

    /// Parses a reason someone typed.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let text = text.trim();
        Self::check_limits(text)?;
        gdpr::check_user_text("reason", text)?;
        Ok(Self(text.to_owned()))
    }

    /// A reason the service itself gives (the retention rule that ended a follow-up's
    /// retention); must meet the limits.
    pub fn system(text: impl Into<String>) -> Self {
        let text = text.into();
        debug_assert!(Self::check_limits(&text).is_ok(), "{text}");
        Self(text)
    }

    fn check_limits(text: &str) -> Result<(), ValidationError> {
        one_line("reason", text, Self::MAX_CHARS)
    }
}

string_newtype_access!(Reason);

impl TryFrom<String> for Reason {
    type Error = ValidationError;

    /// Reads a stored reason: limits only (see the `text` module on stored text).
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::check_limits(&text)?;
        Ok(Self(text))
    }
}

/// Why a follow-up's personal data was erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureCause {
    /// Its data subject asked for erasure (GDPR art. 17), through an operator.
    Request,
    /// Its retention period ended (GDPR art. 5(1)(e)).
    Retention,
}

impl ErasureCause {
    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Retention => "retention",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_subject_reads_and_writes_as_type_colon_id() {
        let subject: DataSubject = "guest_student:G-7:x".parse().unwrap();
        assert_eq!(subject.subject_type(), SubjectType::GuestStudent);
        assert_eq!(subject.id(), "G-7:x");
        assert_eq!(subject.to_string(), "guest_student:G-7:x");
        let json = serde_json::to_value(&subject).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "guest_student", "id": "G-7:x"})
        );
        assert_eq!(
            serde_json::from_value::<DataSubject>(json).unwrap(),
            subject
        );
    }

    #[test]
    fn an_unknown_subject_type_or_an_empty_id_is_refused() {
        assert!("teacher:T-1".parse::<DataSubject>().is_err());
        assert!("student:".parse::<DataSubject>().is_err());
        assert!("S-1".parse::<DataSubject>().is_err());
    }

    #[test]
    fn a_regarding_of_a_person_names_its_data_subject_and_a_record_does_not() {
        let student = Regarding::parse("student", "S-1").unwrap();
        assert_eq!(
            DataSubject::of_regarding(&student).unwrap().to_string(),
            "student:S-1"
        );
        let application = Regarding::parse("application", "APP-1").unwrap();
        assert_eq!(DataSubject::of_regarding(&application), None);
        let user = Regarding::parse("user", "u1").unwrap();
        assert_eq!(DataSubject::of_regarding(&user), None);
    }

    #[test]
    fn a_reason_with_a_cpr_number_is_refused() {
        assert!(Reason::parse("Anmodning 2026-14").is_ok());
        assert_eq!(
            Reason::parse("for 010190-1234").unwrap_err().code(),
            "gdpr_cpr_number"
        );
        assert_eq!(Reason::parse("  ").unwrap_err().code(), "empty");
    }
}
