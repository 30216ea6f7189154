//! Event type patterns: `dk.esas.job.applicant_transfer.*` and friends.
//!
//! A pattern has the five dot-separated parts of an ESAS event type:
//! `dk.esas.job.<job>.<outcome>` or `dk.esas.event.<entity>.<event>`. In the last two parts a
//! `*` stands for any run of characters other than a dot, so `*` never spans two parts:
//!
//! - `dk.esas.job.applicant_transfer.*`: every outcome of the applicant transfer job;
//! - `dk.esas.job.*.failed`: every failed job;
//! - `dk.esas.job.applicant_*.failed`: failures of jobs whose name starts with `applicant_`.

/// A validated event type pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypePattern {
    /// The pattern as written, for [`crate::Rule::on`] and messages.
    text: String,
}

/// The number of dot-separated parts in an ESAS event type.
const PARTS: usize = 5;

impl TypePattern {
    /// Checks the pattern's form; the error says what is wrong, for a [`crate::RuleError`].
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('.').collect();
        let prefix_ok = parts.len() == PARTS
            && parts[0] == "dk"
            && parts[1] == "esas"
            && (parts[2] == "job" || parts[2] == "event");
        let names_ok = parts.iter().skip(3).all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '*')
        });
        if prefix_ok && names_ok {
            Ok(Self {
                text: text.to_owned(),
            })
        } else {
            Err(format!(
                "{text:?} is not an event type pattern (write dk.esas.job.<job>.<outcome> or \
                 dk.esas.event.<entity>.<event>; the last two parts use a-z, 0-9, _ and may \
                 contain *)"
            ))
        }
    }

    /// The pattern as written in the rules file.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// True when `event_type` has the same number of parts and each part matches.
    pub(crate) fn matches(&self, event_type: &str) -> bool {
        let mut pattern_parts = self.text.split('.');
        let mut type_parts = event_type.split('.');
        loop {
            match (pattern_parts.next(), type_parts.next()) {
                (None, None) => return true,
                (Some(pattern), Some(part)) if glob(pattern, part) => {}
                _ => return false,
            }
        }
    }
}

/// Matches `text` against `pattern`, where `*` stands for any run of characters (also none).
///
/// The classic greedy algorithm: on a mismatch, go back to the last `*` and let it swallow
/// one more character.
fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and where in `text` it started matching.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> TypePattern {
        TypePattern::parse(text).unwrap()
    }

    #[test]
    fn exact_pattern_matches_only_its_own_type() {
        let p = pattern("dk.esas.job.applicant_transfer.failed");
        assert!(p.matches("dk.esas.job.applicant_transfer.failed"));
        assert!(!p.matches("dk.esas.job.applicant_transfer.succeeded"));
        assert!(!p.matches("dk.esas.job.applicant_transfer.failed.extra"));
        assert!(!p.matches("dk.esas.job.applicant_transfer"));
    }

    #[test]
    fn star_as_whole_part_matches_any_outcome_but_not_more_parts() {
        let p = pattern("dk.esas.job.applicant_transfer.*");
        assert!(p.matches("dk.esas.job.applicant_transfer.failed"));
        assert!(p.matches("dk.esas.job.applicant_transfer.completed_with_defects"));
        assert!(!p.matches("dk.esas.job.other_job.failed"));
        assert!(!p.matches("dk.esas.event.applicant_transfer.failed"));
        assert!(!p.matches("dk.esas.job.applicant_transfer.failed.again"));
    }

    #[test]
    fn star_inside_a_part_matches_prefixes_and_suffixes() {
        let p = pattern("dk.esas.job.applicant_*.*ed");
        assert!(p.matches("dk.esas.job.applicant_transfer.failed"));
        assert!(p.matches("dk.esas.job.applicant_x.succeeded"));
        assert!(!p.matches("dk.esas.job.applicant_transfer.completed_with_defects"));
        assert!(!p.matches("dk.esas.job.student_transfer.failed"));
    }

    #[test]
    fn star_never_spans_a_dot() {
        let p = pattern("dk.esas.job.*.failed");
        assert!(p.matches("dk.esas.job.any_job.failed"));
        assert!(!p.matches("dk.esas.job.two.parts.failed"));
    }

    #[test]
    fn glob_backtracks_over_repeated_text() {
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(glob("*", ""));
        assert!(!glob("a*c", "abcd"));
    }

    #[test]
    fn patterns_outside_the_esas_type_scheme_are_refused() {
        for text in [
            "",
            "dk.esas.job",
            "dk.esas.jobs.applicant_transfer.failed",
            "dk.esas.*.applicant_transfer.failed",
            "esas.jobs.applicant_transfer.failed",
            "dk.esas.job.applicant_transfer.failed.extra",
            "dk.esas.job.Applicant.failed",
            "dk.esas.job..failed",
        ] {
            assert!(TypePattern::parse(text).is_err(), "{text:?} was accepted");
        }
    }
}
