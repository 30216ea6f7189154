//! [`ValidationError`]: why a value could not be parsed.

use crate::gdpr::GdprViolation;

/// Why a value could not be parsed. Every variant names the field, so an API can point the
/// caller at the exact input to fix. Rejected values are never echoed in clear: messages show
/// at most 40 characters, with CPR numbers masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A required value was empty (free text: after trimming).
    #[error("{field} must not be empty")]
    Empty {
        /// The field that was empty.
        field: &'static str,
    },
    /// The value has more characters than the field allows.
    #[error("{field} is too long: {actual} characters, at most {max} are allowed; shorten it")]
    TooLong {
        /// The field that was too long.
        field: &'static str,
        /// The largest number of characters (not bytes) the field accepts.
        max: usize,
        /// How many characters the value had.
        actual: usize,
    },
    /// The value contains a character the field does not accept.
    #[error(
        "{field} contains the character {found:?}, which is not allowed: {field} must be {allowed}"
    )]
    InvalidCharacter {
        /// The field with the bad character.
        field: &'static str,
        /// The first character that is not allowed.
        found: char,
        /// What the field accepts, in words.
        allowed: &'static str,
    },
    /// The value is not one of a closed set of names (a kind, a status, ...).
    #[error("{field} must be one of {expected}, not \"{value}\"")]
    UnknownValue {
        /// The field with the unknown name.
        field: &'static str,
        /// The rejected value (shortened, CPR numbers masked).
        value: String,
        /// The accepted names, comma separated.
        expected: String,
    },
    /// The value does not have the expected structure (a UUID, `user:<id>`, ...).
    #[error("{field} is malformed: expected {expected}, got \"{value}\"")]
    Malformed {
        /// The malformed field.
        field: &'static str,
        /// The rejected value (shortened, CPR numbers masked).
        value: String,
        /// The expected structure, in words.
        expected: &'static str,
    },
    /// User text contains a CPR number or sensitive personal data (see [`crate::gdpr`]).
    #[error(transparent)]
    Gdpr(#[from] GdprViolation),
}

impl ValidationError {
    /// A stable, machine-readable code for this error (for API problem types and metrics).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty { .. } => "empty",
            Self::TooLong { .. } => "too_long",
            Self::InvalidCharacter { .. } => "invalid_character",
            Self::UnknownValue { .. } => "unknown_value",
            Self::Malformed { .. } => "malformed",
            Self::Gdpr(violation) => violation.code(),
        }
    }

    /// The name of the field that was rejected.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Empty { field }
            | Self::TooLong { field, .. }
            | Self::InvalidCharacter { field, .. }
            | Self::UnknownValue { field, .. }
            | Self::Malformed { field, .. } => field,
            Self::Gdpr(violation) => violation.field(),
        }
    }
}
