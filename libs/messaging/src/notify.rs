//! Live delivery subjects (design section 5): every change to a follow-up is published, for
//! each user and team who can see it, on `followups.notify.<institution>.<user|team>.<id>`.
//!
//! Institution ids are safe subject tokens already; user and team ids may hold `.`, `*` or
//! `>` (an e-mail address as user id), so the id token is percent-encoded: letters, digits,
//! `_`, `-` and `@` stay, every other byte becomes `%XX`.

use std::fmt::Write as _;

/// The subject prefix of live delivery.
pub const PREFIX: &str = "followups.notify";

/// The live delivery subject of `principal_type` (`user` or `team`) `id` at `institution`.
pub fn subject(institution: &str, principal_type: &str, id: &str) -> String {
    format!("{PREFIX}.{institution}.{principal_type}.{}", token(id))
}

/// `id` as one subject token.
pub fn token(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'@') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_subject_characters_become_one_safe_token() {
        assert_eq!(
            subject("KP", "user", "anne.hansen@kp.dk"),
            "followups.notify.KP.user.anne%2Ehansen@kp%2Edk"
        );
        assert_eq!(token("a*b>c d"), "a%2Ab%3Ec%20d");
        assert_eq!(
            subject("KP", "team", "optag"),
            "followups.notify.KP.team.optag"
        );
    }
}
