//! The GDPR guard: CPR numbers and sensitive personal data must never be stored in follow-up
//! text.
//!
//! - Text a user typed is refused ([`check_user_text`]) with a [`GdprViolation`] that says what
//!   was found and that such documentation belongs in Sag og Dokument (the ESAS case and
//!   document module), never the number itself.
//! - Text from upstream jobs is masked instead ([`mask`]): a failed job must never lose its
//!   follow-up because of what its message says.
//!
//! # CPR numbers
//!
//! A CPR number is `DDMMYY` forming a calendar date, optionally one '-' or one ' ', then four
//! digits, and not part of a longer run of digits. There is no modulus-11 check: numbers that
//! fail it have been issued since 2007. The century is unknown, so 29 February is accepted in
//! every year divisible by four (and in year 00). The scanner is hand-written and works on
//! bytes: CPR digits are ASCII, and ASCII bytes never occur inside a multi-byte UTF-8
//! character, so every match is a valid `str` range.
//!
//! # Sensitive-data terms
//!
//! [`SENSITIVE_TERMS`] lists words that reveal health, medical certificates or absence
//! reasons. They are matched case-insensitively (Unicode-aware, so æøå work) at the start of
//! a word, so inflections and compounds that start with a term match too ("Diagnosen",
//! "sygemeldingen", "helbredsoplysninger"). The list is deliberately specific; see its
//! documentation for what was left out to avoid refusing ordinary study administration.

use std::iter::FusedIterator;
use std::ops::Range;

/// Words whose presence in user text points to sensitive personal data (health, medical
/// certificates, absence reasons). Lowercase; matched at the start of a word; a space in a
/// term matches any run of whitespace.
///
/// Left out on purpose, because they are part of ordinary study administration at university
/// colleges: "syg"/"syge" (the nursing programme is "sygeplejerskeuddannelsen"), bare
/// "psykiatri" (nursing students do clinical placements "i psykiatrien", and "psykiatrisk
/// sygepleje" is a course), "diagnostisk" (radiography teaches "diagnostisk radiografi"),
/// "terapi" (physio- and occupational therapy programmes), "barsel"/"orlov" (leave is
/// handled in ESAS and says nothing about health). "handicap" is kept: in follow-ups about
/// students it reveals a disability (handicaptillæg, SPS), which is health data.
pub const SENSITIVE_TERMS: &[&str] = &[
    // Medical certificates and records.
    "lægeerklæring",
    "lægeattest",
    "lægejournal",
    // Sickness absence.
    "sygemelding",
    "sygemeldt",
    "sygefravær",
    "sygdom",
    // Diagnoses and health information.
    "diagnose",
    "diagnosticeret",
    "helbredsoplysning",
    "helbredsmæssig",
    "psykiatrisk behandling",
    "psykiatrisk indlæggelse",
    "psykisk lidelse",
    "depression",
    "handicap",
    // The same in English.
    "medical certificate",
    "medical record",
    "sick leave",
    "sick note",
    "diagnosis",
    "diagnosed",
    "illness",
    "mental health",
];

/// Why user text was refused by the GDPR guard. Messages never repeat the CPR number found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GdprViolation {
    /// The text contains a CPR number.
    #[error(
        "{field} contains a CPR number; CPR numbers must not be written in follow-ups. \
         Remove it: documentation that needs the CPR number belongs in Sag og Dokument"
    )]
    CprNumber {
        /// The field that contains it (`subject` or `description`).
        field: &'static str,
    },
    /// The text contains a word that points to sensitive personal data.
    #[error(
        "{field} contains \"{term}\", which points to sensitive personal data (health, \
         medical certificates, absence reasons) that must not be written in follow-ups. \
         Remove it: such documentation belongs in Sag og Dokument"
    )]
    SensitiveData {
        /// The field that contains it (`subject` or `description`).
        field: &'static str,
        /// The entry of [`SENSITIVE_TERMS`] that matched.
        term: &'static str,
    },
}

impl GdprViolation {
    /// A stable, machine-readable code: `gdpr_cpr_number` or `gdpr_sensitive_data`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::CprNumber { .. } => "gdpr_cpr_number",
            Self::SensitiveData { .. } => "gdpr_sensitive_data",
        }
    }

    /// The field that was refused.
    pub fn field(&self) -> &'static str {
        match self {
            Self::CprNumber { field } | Self::SensitiveData { field, .. } => field,
        }
    }
}

/// Checks text a user typed into `field`: refuses it if it contains a CPR number or one of the
/// [`SENSITIVE_TERMS`].
pub fn check_user_text(field: &'static str, text: &str) -> Result<(), GdprViolation> {
    if find_cpr(text).is_some() {
        return Err(GdprViolation::CprNumber { field });
    }
    if let Some(term) = find_sensitive_term(text) {
        return Err(GdprViolation::SensitiveData { field, term });
    }
    Ok(())
}

/// The byte range of the first CPR number in `text`, if any.
pub fn find_cpr(text: &str) -> Option<Range<usize>> {
    find_all_cpr(text).next()
}

/// Every CPR number in `text`, as byte ranges, left to right, not overlapping.
pub fn find_all_cpr(text: &str) -> CprMatches<'_> {
    CprMatches {
        bytes: text.as_bytes(),
        next: 0,
    }
}

/// Iterator over the CPR numbers in a text; made by [`find_all_cpr`].
#[derive(Debug, Clone)]
pub struct CprMatches<'a> {
    /// The text being scanned.
    bytes: &'a [u8],
    /// Where the scan goes on.
    next: usize,
}

impl Iterator for CprMatches<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        while let Some(&byte) = self.bytes.get(self.next) {
            let start = self.next;
            self.next += 1;
            let previous_is_digit = start > 0
                && self
                    .bytes
                    .get(start - 1)
                    .is_some_and(|b| b.is_ascii_digit());
            // A CPR number starts with a digit that is not in the middle of a longer number.
            if !byte.is_ascii_digit() || previous_is_digit {
                continue;
            }
            if let Some(end) = cpr_ending_at(self.bytes, start) {
                self.next = end;
                return Some(start..end);
            }
        }
        None
    }
}

impl FusedIterator for CprMatches<'_> {}

/// If a CPR number starts at `start`, the index just after it.
fn cpr_ending_at(bytes: &[u8], start: usize) -> Option<usize> {
    let date = bytes.get(start..start + 6)?;
    if !date.iter().all(u8::is_ascii_digit) || !is_cpr_date(date) {
        return None;
    }
    let mut serial_start = start + 6;
    if matches!(bytes.get(serial_start), Some(b'-' | b' ')) {
        serial_start += 1;
    }
    let serial = bytes.get(serial_start..serial_start + 4)?;
    if !serial.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let end = serial_start + 4;
    if bytes.get(end).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    Some(end)
}

/// True when six ASCII digits `DDMMYY` form a calendar date (29 February whenever YY is
/// divisible by four, since the century is unknown).
fn is_cpr_date(date: &[u8]) -> bool {
    let number = |i: usize| -> u32 {
        date.get(i..i + 2).map_or(0, |pair| {
            pair.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
        })
    };
    let (day, month, year) = (number(0), number(2), number(4));
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 => 29,
        2 => 28,
        _ => 0,
    };
    (1..=days_in_month).contains(&day)
}

/// `text` with every CPR number masked as `DDMMYY-xxxx`: the date part is kept (it helps a
/// caseworker find the person in ESAS), the serial digits are not, whatever separator the
/// original had.
pub fn mask(text: &str) -> String {
    let mut masked = String::with_capacity(text.len() + 8);
    let mut copied_up_to = 0;
    for cpr in find_all_cpr(text) {
        masked.push_str(&text[copied_up_to..cpr.start]);
        masked.push_str(&text[cpr.start..cpr.start + 6]);
        masked.push_str("-xxxx");
        copied_up_to = cpr.end;
    }
    masked.push_str(&text[copied_up_to..]);
    masked
}

/// The first entry of [`SENSITIVE_TERMS`] (in list order) found at the start of a word in
/// `text`, ignoring case.
pub fn find_sensitive_term(text: &str) -> Option<&'static str> {
    let normalized = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    SENSITIVE_TERMS.iter().copied().find(|term| {
        normalized.match_indices(term).any(|(at, _)| {
            normalized[..at]
                .chars()
                .next_back()
                .is_none_or(|before| !before.is_alphanumeric())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cprs(text: &str) -> Vec<&str> {
        find_all_cpr(text).map(|range| &text[range]).collect()
    }

    #[test]
    fn a_cpr_number_with_a_hyphen_is_found() {
        assert_eq!(cprs("ansøger 010203-1234 mangler"), ["010203-1234"]);
    }

    #[test]
    fn a_cpr_number_without_a_separator_is_found() {
        assert_eq!(cprs("cpr 0102031234."), ["0102031234"]);
    }

    #[test]
    fn a_cpr_number_with_a_space_is_found() {
        assert_eq!(cprs("cpr: 010203 1234"), ["010203 1234"]);
    }

    #[test]
    fn a_cpr_number_at_the_start_and_end_of_the_text_is_found() {
        assert_eq!(find_cpr("0102031234"), Some(0..10));
        assert_eq!(
            cprs("3112991234 og 010100-0000"),
            ["3112991234", "010100-0000"]
        );
    }

    #[test]
    fn an_invalid_date_is_not_a_cpr_number() {
        for text in [
            "320199-1234",
            "000199-1234",
            "011399-1234",
            "010099-1234",
            "310499-1234",
        ] {
            assert_eq!(find_cpr(text), None, "{text}");
        }
    }

    #[test]
    fn the_last_day_of_each_month_is_accepted() {
        for text in ["310199-1234", "300499-1234", "280299-1234", "311299-1234"] {
            assert!(find_cpr(text).is_some(), "{text}");
        }
    }

    #[test]
    fn the_29th_of_february_is_accepted_only_in_years_divisible_by_four() {
        assert!(find_cpr("290200-1234").is_some());
        assert!(find_cpr("290296-1234").is_some());
        assert_eq!(find_cpr("290297-1234"), None);
        assert_eq!(find_cpr("300296-1234"), None);
    }

    #[test]
    fn a_number_that_fails_modulus_11_is_still_a_cpr_number() {
        // 010203-1234 does not pass the old modulus-11 check.
        assert!(find_cpr("010203-1234").is_some());
    }

    #[test]
    fn part_of_a_longer_number_is_not_a_cpr_number() {
        for text in [
            "90102031234",
            "01020312345",
            "010203-12345",
            "9010203-1234",
            "order 123456789012",
        ] {
            assert_eq!(find_cpr(text), None, "{text}");
        }
    }

    #[test]
    fn other_separators_and_short_numbers_are_not_cpr_numbers() {
        for text in [
            "010203--1234",
            "010203/1234",
            "010203  1234",
            "010203-123",
            "01020-1234",
        ] {
            assert_eq!(find_cpr(text), None, "{text}");
        }
    }

    #[test]
    fn cpr_numbers_next_to_letters_and_non_ascii_text_are_found() {
        assert_eq!(cprs("æ0102031234ø"), ["0102031234"]);
    }

    #[test]
    fn masking_keeps_the_date_and_hides_the_serial_digits() {
        assert_eq!(
            mask("Optagelsesstatus er ikke Bekræftet for ansøger 010203-1234"),
            "Optagelsesstatus er ikke Bekræftet for ansøger 010203-xxxx"
        );
        assert_eq!(
            mask("a 0102031234 b 010203 1234"),
            "a 010203-xxxx b 010203-xxxx"
        );
        assert_eq!(mask("no numbers here"), "no numbers here");
        assert_eq!(mask("320199-1234"), "320199-1234");
    }

    #[test]
    fn sensitive_terms_are_found_in_any_case() {
        for text in [
            "Lægeerklæring modtaget",
            "LÆGEERKLÆRING",
            "kom med en lægeattest",
            "Diagnosen er stillet",
            "sygemeldingen løber til fredag",
            "Er SYGEMELDT",
            "diagnosticeret med noget",
            "helbredsoplysninger vedlagt",
            "has a Medical  Certificate",
            "on sick\nleave",
            "diagnosis pending",
            "handicaptillæg",
        ] {
            assert!(find_sensitive_term(text).is_some(), "{text}");
        }
    }

    #[test]
    fn sensitive_terms_only_match_at_the_start_of_a_word() {
        assert_eq!(find_sensitive_term("ikke-sygemeldt"), Some("sygemeldt"));
        assert_eq!(find_sensitive_term("prognosediagnose"), None);
    }

    #[test]
    fn ordinary_study_administration_words_are_not_sensitive() {
        for text in [
            "Sygeplejerskeuddannelsen, 3. semester",
            "Praktik i psykiatrien",
            "Psykiatrisk sygepleje, eksamen",
            "Diagnostisk radiografi",
            "Fysioterapeut, orlov",
            "Barselsorlov registreret",
        ] {
            assert_eq!(find_sensitive_term(text), None, "{text}");
        }
    }

    #[test]
    fn user_text_with_a_cpr_number_is_refused_without_showing_it() {
        let violation = check_user_text("subject", "Ring 010203-1234").unwrap_err();
        assert_eq!(violation.code(), "gdpr_cpr_number");
        assert_eq!(violation.field(), "subject");
        let message = violation.to_string();
        assert!(message.contains("Sag og Dokument"), "{message}");
        assert!(!message.contains("010203"), "{message}");
    }

    #[test]
    fn user_text_with_a_sensitive_term_is_refused_naming_the_term() {
        let violation = check_user_text("description", "Diagnosen er stillet").unwrap_err();
        assert_eq!(
            violation,
            GdprViolation::SensitiveData {
                field: "description",
                term: "diagnose"
            }
        );
        assert_eq!(violation.code(), "gdpr_sensitive_data");
        assert!(violation.to_string().contains("Sag og Dokument"));
    }

    #[test]
    fn ordinary_user_text_passes() {
        assert_eq!(
            check_user_text("subject", "Manglende GUE for SUE 12 på hold 2025A"),
            Ok(())
        );
    }

    #[test]
    fn every_term_is_lowercase_so_it_can_match_lowercased_text() {
        for term in SENSITIVE_TERMS {
            assert_eq!(term.to_lowercase(), *term);
        }
    }
}
