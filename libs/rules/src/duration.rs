//! Due offsets as operators write them: `3d`, `48h`, `30m`, or combined like `1d12h`.

use chrono::TimeDelta;

/// The longest offset accepted; anything longer is surely a typo.
const MAX_DAYS: i64 = 3650;

/// Parses a due offset. A day is 24 hours (due dates are instants, not calendar dates).
pub(crate) fn parse_due_in(text: &str) -> Result<TimeDelta, String> {
    let not_a_duration = || format!("{text:?} is not a duration (use e.g. 5d, 48h, 30m)");
    let mut minutes: i64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit_minutes = match c {
            'd' => 24 * 60,
            'h' => 60,
            'm' => 1,
            _ => return Err(not_a_duration()),
        };
        // At most 9 digits, so the multiplication below cannot overflow.
        if number.is_empty() || number.len() > 9 {
            return Err(not_a_duration());
        }
        let amount: i64 = number.parse().map_err(|_| not_a_duration())?;
        minutes += amount * unit_minutes;
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        return Err(not_a_duration());
    }
    if minutes > MAX_DAYS * 24 * 60 {
        return Err(format!("{text:?} is longer than {MAX_DAYS} days"));
    }
    TimeDelta::try_minutes(minutes).ok_or_else(not_a_duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_hours_and_minutes_are_understood() {
        assert_eq!(parse_due_in("3d"), Ok(TimeDelta::days(3)));
        assert_eq!(parse_due_in("48h"), Ok(TimeDelta::hours(48)));
        assert_eq!(parse_due_in("30m"), Ok(TimeDelta::minutes(30)));
        assert_eq!(
            parse_due_in("1d12h"),
            Ok(TimeDelta::days(1) + TimeDelta::hours(12))
        );
        assert_eq!(parse_due_in("0m"), Ok(TimeDelta::zero()));
    }

    #[test]
    fn anything_else_is_refused_with_an_example() {
        for text in [
            "",
            "5",
            "5x",
            "d",
            "-3d",
            "3 d",
            "3D",
            "1.5d",
            "9999999999d",
        ] {
            let problem = parse_due_in(text).unwrap_err();
            assert!(problem.contains("5d, 48h, 30m"), "{text:?}: {problem}");
        }
    }

    #[test]
    fn offsets_longer_than_ten_years_are_refused() {
        assert!(parse_due_in("3650d").is_ok());
        assert!(parse_due_in("3651d").unwrap_err().contains("longer than"));
    }
}
