//! The two ways things go wrong: a rules file is wrong ([`RuleError`], at start-up), or an
//! event lacks data a matching rule needs ([`EvaluateError`], per message).

use std::path::PathBuf;

/// A rules file that cannot be used. The message always says where the problem is: the file,
/// and for a problem inside a rule, the rule (its id, or `#n` for the n-th rule when it has no
/// usable id) and the field.
///
/// Nested errors are written into the message rather than exposed as a `source`, so that
/// logging the error once prints everything exactly once.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The file given to [`RuleSet::load`](crate::RuleSet::load) could not be read.
    #[error("cannot read rules file {}: {error}", path.display())]
    Read {
        /// The file we tried to read, so the operator knows which setting to fix.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },

    /// A problem inside the file read by [`RuleSet::load`](crate::RuleSet::load).
    #[error("rules file {}: {error}", path.display())]
    InFile {
        /// The file the problem is in.
        path: PathBuf,
        /// The problem itself (never another `InFile`).
        error: Box<RuleError>,
    },

    /// The text is not valid TOML at all.
    #[error("rules are not valid TOML: {message}")]
    Toml {
        /// The TOML parser's message, with line and column.
        message: String,
    },

    /// The file is TOML, but its top level is not a list of `[[rule]]` tables.
    #[error("rules file: {problem}")]
    File {
        /// What is wrong, in words.
        problem: String,
    },

    /// One field of one rule is wrong (missing, unknown, of the wrong type or invalid).
    #[error("rule `{rule}`: field `{field}`: {problem}")]
    Field {
        /// The rule's id, or `#n` (counting from 1) when the rule has no usable id.
        rule: String,
        /// The field, as written in the file: `due_in`, `sections[1].item`, `owner_team.UCL`.
        field: String,
        /// What is wrong with it, and where helpful, what would be right.
        problem: String,
    },
}

impl RuleError {
    /// Shorthand for [`RuleError::Field`].
    pub(crate) fn field(
        rule: impl Into<String>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Self::Field {
            rule: rule.into(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// An event matched a rule but lacks what the rule needs to build its follow-up. The worker
/// dead-letters such a message instead of creating a follow-up full of holes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvaluateError {
    /// A field the rule requires, or uses in a template, is absent, null or blank.
    #[error("rule `{rule_id}`: the event lacks `{field}`")]
    MissingData {
        /// The rule that needed the field.
        rule_id: String,
        /// The field as written in the rule, e.g. `data.application_id`; inside a section
        /// item it also says which list element, e.g. `data.errors[0].code`.
        field: String,
    },

    /// A field is present but of a type the rule cannot use (e.g. a section's list is text).
    #[error("rule `{rule_id}`: `{field}` has the wrong type (expected {expected})")]
    WrongType {
        /// The rule that read the field.
        rule_id: String,
        /// The field, written as in [`EvaluateError::MissingData`].
        field: String,
        /// What the rule needed, e.g. "a list".
        expected: &'static str,
    },
}
