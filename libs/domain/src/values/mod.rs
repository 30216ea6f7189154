//! Validated value types used by commands, events and the follow-up state.
//!
//! Every type here is built only by parsing (`parse`, `FromStr`, `TryFrom<String>` or serde,
//! which goes through the same checks), so code that holds a [`Subject`] or a [`UserId`] never
//! has to check it again ("parse, don't validate").
//!
//! # Layout
//!
//! - `ids`: [`FollowUpId`], [`InstitutionId`], [`UserId`], [`TeamId`] and [`Principal`].
//! - `enums`: the closed sets [`Kind`], [`Priority`], [`Status`], [`StatusReason`], [`Access`],
//!   [`InboxState`].
//! - `text`: [`Subject`], [`Description`] and what a follow-up is about ([`Regarding`]).
//! - `person`: whose personal data a follow-up holds ([`DataSubject`]), [`Reason`],
//!   [`ErasureCause`] and the text erased data becomes ([`ERASED`]).
//! - `origin`: who created a follow-up ([`Source`]) and who made a change ([`Actor`]).
//! - `error`: [`ValidationError`], returned by every parser here.

/// Implements the read-only access every string newtype shares: `as_str`, `Display`,
/// `AsRef<str>`, and the conversion back into `String` (which serde's `into` uses).
macro_rules! string_newtype_access {
    ($name:ident) => {
        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

mod enums;
mod error;
mod ids;
mod origin;
mod person;
pub(crate) mod text;

pub use enums::{Access, InboxState, Kind, Priority, Status, StatusReason};
pub use error::ValidationError;
pub use ids::{FollowUpId, InstitutionId, KnownInstitutions, Principal, TeamId, UserId};
pub use origin::{Actor, Source};
pub use person::{DataSubject, ErasureCause, Reason, SubjectType, ERASED};
pub use text::{Description, NoteText, Regarding, RegardingType, Subject};

/// Shortens `text` to at most `max` characters; a shortened text ends with '…'.
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", kept.trim_end())
}

/// A rejected input as error messages may show it: CPR numbers masked and at most 40
/// characters, so an error message (and the log line it ends up in) never carries personal data
/// in clear.
pub(crate) fn shown(value: &str) -> String {
    truncate_chars(&crate::gdpr::mask(value), 40)
}
