//! Free text ([`Subject`], [`Description`]) and what a follow-up is about ([`Regarding`]).
//!
//! Free text comes from two places, and each has its own constructor:
//!
//! - `parse`, for text a user typed: trimmed, checked against the limits, and refused when it
//!   breaks the GDPR guard, so the user can fix it.
//! - `from_upstream`, for text built from an upstream job's message: it never fails (a failed
//!   job must never lose its exception), CPR numbers are masked and the text is cut to fit.
//!
//! Deserializing (reading stored events) checks the limits only, not the GDPR guard: stored
//! upstream text may legitimately contain words the guard refuses from users, and a stored
//! event must always stay readable, even after the list of sensitive terms grows. Parse user
//! input with `parse`, never by deserializing into these types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{shown, truncate_chars, ValidationError};
use crate::gdpr;

/// The one-line title of a follow-up (1 to 200 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subject(String);

impl Subject {
    /// The most characters (not bytes) a subject may have.
    pub const MAX_CHARS: usize = 200;

    /// What an upstream subject becomes when nothing is left of it ("no subject").
    pub const EMPTY_UPSTREAM: &'static str = "(uden emne)";

    /// Parses a subject a user typed: trimmed, 1 to 200 characters, one line (no control
    /// characters), and no CPR number or sensitive personal data (GDPR guard, field
    /// `subject`).
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let text = text.trim();
        Self::check_limits(text)?;
        gdpr::check_user_text("subject", text)?;
        Ok(Self(text.to_owned()))
    }

    /// Makes a subject from an upstream job's text. Never fails: whitespace and line breaks
    /// become single spaces, CPR numbers are masked (`DDMMYY-xxxx`), text longer than 200
    /// characters is cut and ends with '…', and empty text becomes "(uden emne)".
    pub fn from_upstream(text: &str) -> Self {
        let one_line = text
            .split(|c: char| c.is_whitespace() || c.is_control())
            .filter(|word| !word.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        // Mask before cutting, so a CPR number cut in half cannot escape the mask.
        let masked = gdpr::mask(&one_line);
        let subject = truncate_chars(&masked, Self::MAX_CHARS);
        if subject.is_empty() {
            Self(Self::EMPTY_UPSTREAM.to_owned())
        } else {
            Self(subject)
        }
    }

    /// What an erased subject reads as ([`super::ERASED`]).
    pub fn erased() -> Self {
        Self(super::ERASED.to_owned())
    }

    /// The limits every subject meets, whoever wrote it.
    fn check_limits(text: &str) -> Result<(), ValidationError> {
        one_line("subject", text, Self::MAX_CHARS)
    }
}

/// The limits of a one-line text `field` (a subject, a reason): not blank, no control
/// characters, at most `max` characters.
pub(crate) fn one_line(field: &'static str, text: &str, max: usize) -> Result<(), ValidationError> {
    if text.trim().is_empty() {
        return Err(ValidationError::Empty { field });
    }
    if let Some(found) = text.chars().find(|c| c.is_control()) {
        return Err(ValidationError::InvalidCharacter {
            field,
            found,
            allowed: "one line of text, without line breaks or other control characters",
        });
    }
    let actual = text.chars().count();
    if actual > max {
        return Err(ValidationError::TooLong { field, max, actual });
    }
    Ok(())
}

/// The limits of a record's id in ESAS, in `field` (a regarding's, a data subject's): 1 to
/// [`Regarding::MAX_ID_CHARS`] characters, no control characters.
pub(super) fn record_id(field: &'static str, id: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    let actual = id.chars().count();
    if actual > Regarding::MAX_ID_CHARS {
        return Err(ValidationError::TooLong {
            field,
            max: Regarding::MAX_ID_CHARS,
            actual,
        });
    }
    if let Some(found) = id.chars().find(|c| c.is_control()) {
        return Err(ValidationError::InvalidCharacter {
            field,
            found,
            allowed: "text without control characters",
        });
    }
    Ok(())
}

string_newtype_access!(Subject);

impl TryFrom<String> for Subject {
    type Error = ValidationError;

    /// Reads a stored subject: limits only, no GDPR guard (see the module docs).
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::check_limits(&text)?;
        Ok(Self(text))
    }
}

/// The longer text of a follow-up (0 to 2000 characters, line breaks allowed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    /// The most characters (not bytes) a description may have.
    pub const MAX_CHARS: usize = 2000;

    /// An empty description (a follow-up does not need one).
    pub fn empty() -> Self {
        Self(String::new())
    }

    /// What an erased description reads as ([`super::ERASED`]).
    pub fn erased() -> Self {
        Self(super::ERASED.to_owned())
    }

    /// True when there is no text.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses a description a user typed: line breaks normalized to `\n`, trimmed, at most
    /// 2000 characters, no control characters except line breaks and tabs, and no CPR number
    /// or sensitive personal data (GDPR guard, field `description`). May be empty.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let text = normalize_line_breaks(text);
        let text = text.trim();
        Self::check_limits(text)?;
        gdpr::check_user_text("description", text)?;
        Ok(Self(text.to_owned()))
    }

    /// Makes a description from an upstream job's text. Never fails: line breaks are
    /// normalized to `\n`, other control characters become spaces, CPR numbers are masked
    /// (`DDMMYY-xxxx`), and text longer than 2000 characters is cut and ends with '…'.
    pub fn from_upstream(text: &str) -> Self {
        let cleaned: String = normalize_line_breaks(text)
            .chars()
            .map(|c| if is_allowed_in_description(c) { c } else { ' ' })
            .collect();
        // Mask before cutting, so a CPR number cut in half cannot escape the mask.
        let masked = gdpr::mask(cleaned.trim());
        Self(truncate_chars(&masked, Self::MAX_CHARS))
    }

    /// The limits every description meets, whoever wrote it.
    fn check_limits(text: &str) -> Result<(), ValidationError> {
        if let Some(found) = text.chars().find(|c| !is_allowed_in_description(*c)) {
            return Err(ValidationError::InvalidCharacter {
                field: "description",
                found,
                allowed: "text without control characters other than line breaks and tabs",
            });
        }
        let actual = text.chars().count();
        if actual > Self::MAX_CHARS {
            return Err(ValidationError::TooLong {
                field: "description",
                max: Self::MAX_CHARS,
                actual,
            });
        }
        Ok(())
    }
}

string_newtype_access!(Description);

/// The text of a note (note) on a follow-up: 1 to 2000 characters once trimmed, line breaks
/// allowed, no CPR number or sensitive personal data (GDPR guard, field `text`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NoteText(String);

impl NoteText {
    /// The most characters a note may have.
    pub const MAX_CHARS: usize = 2000;

    /// Parses a note a user typed.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let text = normalize_line_breaks(text);
        let text = text.trim();
        Self::check_limits(text)?;
        gdpr::check_user_text("text", text)?;
        Ok(Self(text.to_owned()))
    }

    /// What an erased note reads as ([`super::ERASED`]).
    pub fn erased() -> Self {
        Self(super::ERASED.to_owned())
    }

    fn check_limits(text: &str) -> Result<(), ValidationError> {
        if text.is_empty() {
            return Err(ValidationError::Empty { field: "text" });
        }
        if let Some(found) = text.chars().find(|c| !is_allowed_in_description(*c)) {
            return Err(ValidationError::InvalidCharacter {
                field: "text",
                found,
                allowed: "text without control characters other than line breaks and tabs",
            });
        }
        let actual = text.chars().count();
        if actual > Self::MAX_CHARS {
            return Err(ValidationError::TooLong {
                field: "text",
                max: Self::MAX_CHARS,
                actual,
            });
        }
        Ok(())
    }
}

string_newtype_access!(NoteText);

impl TryFrom<String> for NoteText {
    type Error = ValidationError;

    /// Reads a stored note: the limits only (see the module docs).
    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text != super::ERASED {
            Self::check_limits(&text)?;
        }
        Ok(Self(text))
    }
}

impl TryFrom<String> for Description {
    type Error = ValidationError;

    /// Reads a stored description: limits only, no GDPR guard (see the module docs).
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::check_limits(&text)?;
        Ok(Self(text))
    }
}

/// Turns Windows (`\r\n`) and old Mac (`\r`) line breaks into `\n`.
fn normalize_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Descriptions may hold line breaks and tabs, but no other control characters.
fn is_allowed_in_description(c: char) -> bool {
    !c.is_control() || c == '\n' || c == '\t'
}

/// The type of record a follow-up is about: `student`, `application`, `study_programme`,
/// `education_structure`, `guest_student`, … (lowercase letters and '_', 1 to 40 characters).
/// Open-ended on purpose: new upstream record types need no change here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegardingType(String);

impl RegardingType {
    /// The most characters a regarding type may have.
    pub const MAX_CHARS: usize = 40;

    /// Parses a regarding type: 1 to 40 characters of `a-z` and `_`.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let field = "regarding.type";
        if value.is_empty() {
            return Err(ValidationError::Empty { field });
        }
        let actual = value.chars().count();
        if actual > Self::MAX_CHARS {
            return Err(ValidationError::TooLong {
                field,
                max: Self::MAX_CHARS,
                actual,
            });
        }
        if let Some(found) = value
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || *c == '_'))
        {
            return Err(ValidationError::InvalidCharacter {
                field,
                found,
                allowed: "lowercase letters a-z and '_'",
            });
        }
        Ok(Self(value.to_owned()))
    }
}

string_newtype_access!(RegardingType);

impl FromStr for RegardingType {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for RegardingType {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

/// The ESAS record a follow-up is about, such as `{"type":"application","id":"A-1"}`, so that
/// a caseworker can find all follow-ups of one student or application.
///
/// The fields are private so that every `Regarding` has passed [`Regarding::parse`]; read them
/// with [`Regarding::regarding_type`] and [`Regarding::id`]. As text (filters, `Display`,
/// `FromStr`) it is `<type>:<id>`, for example `application:A-1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RegardingJson", into = "RegardingJson")]
pub struct Regarding {
    /// What type of record it is.
    r#type: RegardingType,
    /// The record's id in ESAS (1 to 100 characters, no control characters).
    id: String,
}

impl Regarding {
    /// The most characters a record id may have.
    pub const MAX_ID_CHARS: usize = 100;

    /// Parses a regarding from its type and the record's id (1 to 100 characters, no control
    /// characters; kept exactly as given, since it must match the id in ESAS).
    pub fn parse(regarding_type: &str, id: &str) -> Result<Self, ValidationError> {
        let r#type = RegardingType::parse(regarding_type)?;
        record_id("regarding.id", id)?;
        Ok(Self {
            r#type,
            id: id.to_owned(),
        })
    }

    /// What type of record it is.
    pub fn regarding_type(&self) -> &RegardingType {
        &self.r#type
    }

    /// The record's id in ESAS.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The same type of record with its id erased ([`super::ERASED`]).
    pub fn erased(&self) -> Self {
        Self {
            r#type: self.r#type.clone(),
            id: super::ERASED.to_owned(),
        }
    }
}

impl fmt::Display for Regarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.r#type, self.id)
    }
}

impl FromStr for Regarding {
    type Err = ValidationError;

    /// Reads `<type>:<id>`; the id may itself contain ':'.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((regarding_type, id)) => Self::parse(regarding_type, id),
            None => Err(ValidationError::Malformed {
                field: "regarding",
                value: shown(s),
                expected: "<type>:<id>, such as application:A-1",
            }),
        }
    }
}

/// The JSON shape of a [`Regarding`]; serde goes through it so both parts are validated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegardingJson {
    /// The record type, not yet validated.
    #[serde(rename = "type")]
    regarding_type: String,
    /// The record id, not yet validated.
    id: String,
}

impl TryFrom<RegardingJson> for Regarding {
    type Error = ValidationError;

    fn try_from(json: RegardingJson) -> Result<Self, Self::Error> {
        Self::parse(&json.regarding_type, &json.id)
    }
}

impl From<Regarding> for RegardingJson {
    fn from(regarding: Regarding) -> Self {
        Self {
            regarding_type: regarding.r#type.into(),
            id: regarding.id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_of_1_and_200_characters_is_accepted() {
        assert_eq!(Subject::parse("x").unwrap().as_str(), "x");
        assert!(Subject::parse(&"x".repeat(200)).is_ok());
    }

    #[test]
    fn subject_of_0_or_201_characters_is_refused() {
        assert_eq!(Subject::parse("").unwrap_err().code(), "empty");
        assert_eq!(Subject::parse("   ").unwrap_err().code(), "empty");
        let error = Subject::parse(&"x".repeat(201)).unwrap_err();
        assert_eq!(error.code(), "too_long");
        assert_eq!(error.field(), "subject");
    }

    #[test]
    fn subject_length_counts_characters_not_bytes() {
        assert!(Subject::parse(&"æ".repeat(200)).is_ok());
        assert_eq!(
            Subject::parse(&"ø".repeat(201)).unwrap_err().code(),
            "too_long"
        );
    }

    #[test]
    fn subject_is_trimmed_before_it_is_measured() {
        let padded = format!("  {}  ", "x".repeat(200));
        assert_eq!(Subject::parse(&padded).unwrap().as_str(), "x".repeat(200));
    }

    #[test]
    fn subject_must_be_one_line() {
        assert_eq!(
            Subject::parse("first\nsecond").unwrap_err().code(),
            "invalid_character"
        );
        assert_eq!(
            Subject::parse("a\tb").unwrap_err().code(),
            "invalid_character"
        );
    }

    #[test]
    fn subject_with_a_cpr_number_is_refused_without_echoing_it() {
        let error = Subject::parse("Ring til 010203-1234").unwrap_err();
        assert_eq!(error.code(), "gdpr_cpr_number");
        assert_eq!(error.field(), "subject");
        assert!(!error.to_string().contains("1234"), "{error}");
    }

    #[test]
    fn subject_with_a_sensitive_term_is_refused() {
        let error = Subject::parse("Lægeerklæring modtaget").unwrap_err();
        assert_eq!(error.code(), "gdpr_sensitive_data");
    }

    #[test]
    fn upstream_subject_masks_cpr_numbers() {
        let subject =
            Subject::from_upstream("Optagelsesstatus er ikke Bekræftet for ansøger 010203-1234");
        assert_eq!(
            subject.as_str(),
            "Optagelsesstatus er ikke Bekræftet for ansøger 010203-xxxx"
        );
    }

    #[test]
    fn upstream_subject_collapses_whitespace_and_line_breaks() {
        let subject = Subject::from_upstream("  Overførsel\n\tfejlede\r\n  for  A-1 ");
        assert_eq!(subject.as_str(), "Overførsel fejlede for A-1");
    }

    #[test]
    fn upstream_subject_masks_a_cpr_number_split_over_lines() {
        assert_eq!(
            Subject::from_upstream("ansøger 010203\n1234").as_str(),
            "ansøger 010203-xxxx"
        );
    }

    #[test]
    fn upstream_subject_longer_than_200_characters_is_cut_with_an_ellipsis() {
        let subject = Subject::from_upstream(&"å".repeat(300));
        assert_eq!(subject.as_str().chars().count(), 200);
        assert!(subject.as_str().ends_with('…'));
        let exact = Subject::from_upstream(&"a".repeat(200));
        assert_eq!(exact.as_str(), "a".repeat(200));
    }

    #[test]
    fn upstream_subject_never_leaks_a_cpr_number_cut_at_the_limit() {
        let text = format!("{} 0102031234", "a".repeat(195));
        let subject = Subject::from_upstream(&text);
        assert!(!subject.as_str().contains("1234"), "{subject}");
        assert!(gdpr::find_cpr(subject.as_str()).is_none());
    }

    #[test]
    fn empty_upstream_subject_becomes_uden_emne() {
        assert_eq!(Subject::from_upstream("").as_str(), "(uden emne)");
        assert_eq!(Subject::from_upstream(" \n\t ").as_str(), "(uden emne)");
    }

    #[test]
    fn upstream_subject_is_not_refused_for_sensitive_terms() {
        assert_eq!(
            Subject::from_upstream("Sygemelding").as_str(),
            "Sygemelding"
        );
    }

    #[test]
    fn stored_subjects_are_checked_for_limits_but_not_for_gdpr_terms() {
        let stored: Subject = serde_json::from_value(serde_json::json!("Sygemelding")).unwrap();
        assert_eq!(stored.as_str(), "Sygemelding");
        assert!(serde_json::from_value::<Subject>(serde_json::json!("")).is_err());
        assert!(serde_json::from_value::<Subject>(serde_json::json!("x".repeat(201))).is_err());
    }

    #[test]
    fn description_of_0_and_2000_characters_is_accepted() {
        assert!(Description::parse("").unwrap().is_empty());
        assert!(Description::parse("   ").unwrap().is_empty());
        assert!(Description::parse(&"x".repeat(2000)).is_ok());
    }

    #[test]
    fn description_of_2001_characters_is_refused() {
        let error = Description::parse(&"x".repeat(2001)).unwrap_err();
        assert_eq!(error.code(), "too_long");
        assert_eq!(error.field(), "description");
    }

    #[test]
    fn description_keeps_line_breaks_and_normalizes_them() {
        let description = Description::parse("line one\r\nline two\rthree\n").unwrap();
        assert_eq!(description.as_str(), "line one\nline two\nthree");
    }

    #[test]
    fn description_refuses_other_control_characters() {
        assert_eq!(
            Description::parse("bell \u{7}").unwrap_err().code(),
            "invalid_character"
        );
    }

    #[test]
    fn description_with_a_cpr_number_or_sensitive_term_is_refused() {
        let error = Description::parse("Studerende 0102031234 har ringet").unwrap_err();
        assert_eq!(error.code(), "gdpr_cpr_number");
        assert_eq!(error.field(), "description");
        let error = Description::parse("Har sendt en\nsygemelding").unwrap_err();
        assert_eq!(error.code(), "gdpr_sensitive_data");
    }

    #[test]
    fn upstream_description_masks_cuts_and_keeps_line_breaks() {
        let description = Description::from_upstream("Fejl:\r\n- ansøger 010203 1234\u{0}\n- A-1");
        assert_eq!(description.as_str(), "Fejl:\n- ansøger 010203-xxxx \n- A-1");
        let long = Description::from_upstream(&"x".repeat(2500));
        assert_eq!(long.as_str().chars().count(), 2000);
        assert!(long.as_str().ends_with('…'));
        assert!(Description::from_upstream("").is_empty());
    }

    #[test]
    fn regarding_accepts_valid_type_and_id() {
        let regarding = Regarding::parse("study_programme", "SP:2025/1").unwrap();
        assert_eq!(regarding.regarding_type().as_str(), "study_programme");
        assert_eq!(regarding.id(), "SP:2025/1");
        assert_eq!(regarding.to_string(), "study_programme:SP:2025/1");
        assert_eq!(
            "study_programme:SP:2025/1".parse::<Regarding>().unwrap(),
            regarding
        );
    }

    #[test]
    fn regarding_type_bounds_are_1_to_40_lowercase_letters_and_underscores() {
        assert!(Regarding::parse("a", "1").is_ok());
        assert!(Regarding::parse(&"a".repeat(40), "1").is_ok());
        assert_eq!(Regarding::parse("", "1").unwrap_err().code(), "empty");
        assert_eq!(
            Regarding::parse(&"a".repeat(41), "1").unwrap_err().code(),
            "too_long"
        );
        for bad in ["Student", "study-programme", "student1", "elev ø"] {
            assert_eq!(
                Regarding::parse(bad, "1").unwrap_err().code(),
                "invalid_character",
                "{bad}"
            );
        }
    }

    #[test]
    fn regarding_id_bounds_are_1_to_100_characters_without_control_characters() {
        assert!(Regarding::parse("student", &"9".repeat(100)).is_ok());
        assert_eq!(Regarding::parse("student", "").unwrap_err().code(), "empty");
        assert_eq!(
            Regarding::parse("student", &"9".repeat(101))
                .unwrap_err()
                .code(),
            "too_long"
        );
        assert_eq!(
            Regarding::parse("student", "a\nb").unwrap_err().code(),
            "invalid_character"
        );
    }

    #[test]
    fn regarding_serializes_as_type_and_id_and_validates_on_deserialize() {
        let regarding = Regarding::parse("application", "A-1").unwrap();
        let json = serde_json::json!({"type": "application", "id": "A-1"});
        assert_eq!(serde_json::to_value(&regarding).unwrap(), json);
        assert_eq!(
            serde_json::from_value::<Regarding>(json).unwrap(),
            regarding
        );
        let bad = serde_json::json!({"type": "Application", "id": "A-1"});
        assert!(serde_json::from_value::<Regarding>(bad).is_err());
    }
}
