//! [`CronSchedule`]: when a job fires. A cron expression read as wall-clock time in
//! Europe/Copenhagen ([`TIME_ZONE`]), so a job at 07:00 runs at 07:00 local time in winter
//! (06:00 UTC) and in summer (05:00 UTC).
//!
//! The expression is parsed by the `cron` crate: six fields (`second minute hour
//! day-of-month month day-of-week`, optionally a seventh, the year), or the classic five
//! (`minute hour day-of-month month day-of-week`), which fire at second 0. Day-of-week numbers
//! follow the `cron` crate (1 = Sunday … 7 = Saturday); names (`Mon-Fri`) avoid the confusion.
//!
//! # The two nights a year when the clocks change
//!
//! Cron matches wall-clock times; the nights of a daylight-saving change have wall-clock times
//! that do not exist or that occur twice. As in RFC 5545 (iCalendar, section 3.3.5):
//!
//! - **A time that does not exist** (02:00–02:59 on the last Sunday of March) is read with the
//!   offset before the gap, which moves it one hour later: a job at 02:30 runs at 03:30 summer
//!   time that day (01:30 UTC), once. Ticks of a frequent job that fall into the gap land on
//!   its ticks after the gap, and a tick that lands on another is one firing.
//! - **A time that occurs twice** (02:00–02:59 on the last Sunday of October) fires at its
//!   first occurrence only, so a job at 02:30 runs once that night. Exception: a job whose
//!   hour field is `*` (it runs every hour, e.g. `0 */5 * * * *`) fires in both passes of the
//!   repeated hour, so its interval stays the same through the night.

use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use cron::TimeUnitSpec;

/// The time zone every schedule is read in.
pub const TIME_ZONE: Tz = chrono_tz::Europe::Copenhagen;

/// How far a local wall-clock time and its instant can be apart, and then some: Copenhagen is
/// one or two hours ahead of UTC.
const MARGIN: TimeDelta = TimeDelta::hours(3);

/// The most candidate wall-clock times looked at to find one firing (a schedule that fires
/// every second looks at about 2 × 3 hours of them).
const MAX_CANDIDATES: usize = 100_000;

/// A cron expression, ready to say when it fires. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    /// The expression as configured (five fields are kept as given), for messages.
    expression: String,
    /// The parsed expression (six or seven fields).
    schedule: cron::Schedule,
    /// The hour field is `*`: the job runs in both passes of the repeated autumn hour.
    every_hour: bool,
}

impl CronSchedule {
    /// Parses a cron expression of five, six or seven fields.
    pub fn parse(expression: &str) -> Result<Self, cron::error::Error> {
        let expression = expression.trim();
        let fields = expression.split_whitespace().count();
        let full = if fields == 5 {
            format!("0 {expression}")
        } else {
            expression.to_owned()
        };
        let schedule = cron::Schedule::from_str(&full)?;
        let every_hour = schedule.hours().is_all();
        Ok(Self {
            expression: expression.to_owned(),
            schedule,
            every_hour,
        })
    }

    /// The expression as configured.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first firing strictly after `after`; `None` when the schedule never fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after = whole_seconds(after);
        let start = local(after) - MARGIN;
        let mut best: Option<DateTime<Utc>> = None;
        for wall in self.wall_times_after(start).take(MAX_CANDIDATES) {
            // Every instant of `wall` lies within MARGIN of it, read as UTC.
            if best.is_some_and(|b| wall - MARGIN > b.naive_utc()) {
                break;
            }
            for instant in self.instants(wall) {
                if instant > after && best.is_none_or(|b| instant < b) {
                    best = Some(instant);
                }
            }
        }
        best
    }

    /// The last firing at or before `at`; `None` when the schedule never fired before.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let at = whole_seconds(at);
        let start = local(at) + MARGIN;
        let mut best: Option<DateTime<Utc>> = None;
        let walls = self
            .schedule
            .after(&Utc.from_utc_datetime(&start))
            .rev()
            .map(|t| t.naive_utc())
            .take(MAX_CANDIDATES);
        for wall in walls {
            if best.is_some_and(|b| wall + MARGIN < b.naive_utc()) {
                break;
            }
            for instant in self.instants(wall) {
                if instant <= at && best.is_none_or(|b| instant > b) {
                    best = Some(instant);
                }
            }
        }
        best
    }

    /// The firings in (`after`, `until`], in order (for tests and operators).
    pub fn firings_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let mut firings = Vec::new();
        let mut t = after;
        while let Some(next) = self.next_after(t).filter(|next| *next <= until) {
            firings.push(next);
            t = next;
        }
        firings
    }

    /// The wall-clock times the expression matches, strictly after `start`. The `cron` crate
    /// reads them in UTC, which has neither gaps nor repeats: they are wall-clock times here,
    /// turned into instants by [`CronSchedule::instants`].
    fn wall_times_after(&self, start: NaiveDateTime) -> impl Iterator<Item = NaiveDateTime> + '_ {
        self.schedule
            .after(&Utc.from_utc_datetime(&start))
            .map(|t| t.naive_utc())
    }

    /// The instants at which wall-clock time `wall` fires (none, one, or two).
    fn instants(&self, wall: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match TIME_ZONE.from_local_datetime(&wall) {
            chrono::LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            chrono::LocalResult::Ambiguous(first, second) => {
                if self.every_hour {
                    vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
                } else {
                    vec![first.with_timezone(&Utc)]
                }
            }
            // In the spring gap: read with the offset in force before it.
            chrono::LocalResult::None => {
                let before = TIME_ZONE
                    .from_local_datetime(&(wall - MARGIN))
                    .earliest()
                    .map(|t| t.offset().fix());
                match before {
                    Some(offset) => vec![Utc.from_utc_datetime(&(wall - offset))],
                    None => vec![],
                }
            }
        }
    }
}

/// `t` as wall-clock time in [`TIME_ZONE`].
pub fn local(t: DateTime<Utc>) -> NaiveDateTime {
    t.with_timezone(&TIME_ZONE).naive_local()
}

/// `t` without its fraction of a second (cron works in whole seconds).
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn schedule(expression: &str) -> CronSchedule {
        CronSchedule::parse(expression).unwrap()
    }

    #[test]
    fn a_daily_job_at_seven_runs_at_seven_local_time_around_the_spring_change() {
        // The last Sunday of March 2027 is the 28th: 07:00 is 06:00 UTC on Saturday (winter
        // time) and 05:00 UTC on Sunday and Monday (summer time).
        let firings = schedule("0 0 7 * * *")
            .firings_between(utc("2027-03-26T12:00:00Z"), utc("2027-03-29T12:00:00Z"));
        assert_eq!(
            firings,
            [
                utc("2027-03-27T06:00:00Z"),
                utc("2027-03-28T05:00:00Z"),
                utc("2027-03-29T05:00:00Z"),
            ]
        );
    }

    #[test]
    fn a_daily_job_at_seven_runs_at_seven_local_time_around_the_autumn_change() {
        // The last Sunday of October 2027 is the 31st.
        let firings = schedule("0 0 7 * * *")
            .firings_between(utc("2027-10-29T12:00:00Z"), utc("2027-11-01T12:00:00Z"));
        assert_eq!(
            firings,
            [
                utc("2027-10-30T05:00:00Z"),
                utc("2027-10-31T06:00:00Z"),
                utc("2027-11-01T06:00:00Z"),
            ]
        );
    }

    #[test]
    fn a_job_at_a_time_that_does_not_exist_runs_an_hour_later_that_day_once() {
        // 02:30 on 28 March 2027 does not exist (02:00 jumps to 03:00): it runs at 03:30
        // summer time (01:30 UTC), and at 02:30 local time on the days around it.
        let firings = schedule("0 30 2 * * *")
            .firings_between(utc("2027-03-26T12:00:00Z"), utc("2027-03-29T12:00:00Z"));
        assert_eq!(
            firings,
            [
                utc("2027-03-27T01:30:00Z"),
                utc("2027-03-28T01:30:00Z"),
                utc("2027-03-29T00:30:00Z"),
            ]
        );
    }

    #[test]
    fn a_job_at_a_time_that_occurs_twice_runs_at_its_first_occurrence_only() {
        // 02:30 on 31 October 2027 happens at 00:30 UTC (summer time) and 01:30 UTC.
        let firings = schedule("0 30 2 * * *")
            .firings_between(utc("2027-10-30T12:00:00Z"), utc("2027-11-01T12:00:00Z"));
        assert_eq!(
            firings,
            [utc("2027-10-31T00:30:00Z"), utc("2027-11-01T01:30:00Z")]
        );
    }

    #[test]
    fn a_frequent_job_keeps_its_interval_through_both_nights() {
        let every_15 = schedule("0 */15 * * * *");
        // Spring: 01:45 winter time is 00:45 UTC, the next tick 03:00 summer time is 01:00 UTC.
        let spring =
            every_15.firings_between(utc("2027-03-28T00:30:00Z"), utc("2027-03-28T01:30:00Z"));
        assert_eq!(
            spring,
            [
                utc("2027-03-28T00:45:00Z"),
                utc("2027-03-28T01:00:00Z"),
                utc("2027-03-28T01:15:00Z"),
                utc("2027-03-28T01:30:00Z"),
            ]
        );
        // Autumn: the repeated hour 02:00-02:59 runs twice, every 15 minutes all night.
        let autumn =
            every_15.firings_between(utc("2027-10-30T23:30:00Z"), utc("2027-10-31T02:00:00Z"));
        let expected: Vec<_> = (1..=10)
            .map(|i| utc("2027-10-30T23:30:00Z") + TimeDelta::minutes(15 * i))
            .collect();
        assert_eq!(autumn, expected);
    }

    #[test]
    fn the_latest_firing_is_the_last_one_at_or_before_the_moment() {
        let daily = schedule("0 0 7 * * *");
        assert_eq!(
            daily.latest_at_or_before(utc("2027-03-28T05:00:00Z")),
            Some(utc("2027-03-28T05:00:00Z"))
        );
        assert_eq!(
            daily.latest_at_or_before(utc("2027-03-28T04:59:59.900Z")),
            Some(utc("2027-03-27T06:00:00Z"))
        );
        assert_eq!(
            daily.latest_at_or_before(utc("2027-10-31T05:59:59Z")),
            Some(utc("2027-10-30T05:00:00Z"))
        );
        let gap = schedule("0 30 2 * * *");
        assert_eq!(
            gap.latest_at_or_before(utc("2027-03-28T02:00:00Z")),
            Some(utc("2027-03-28T01:30:00Z"))
        );
        let every_5 = schedule("0 */5 * * * *");
        assert_eq!(
            every_5.latest_at_or_before(utc("2027-10-31T01:07:00Z")),
            Some(utc("2027-10-31T01:05:00Z"))
        );
    }

    #[test]
    fn five_fields_are_the_classic_cron_and_fire_at_second_zero() {
        assert_eq!(
            schedule("0 7 * * Mon-Fri").next_after(utc("2027-03-26T12:00:00Z")),
            Some(utc("2027-03-29T05:00:00Z"))
        );
    }

    #[test]
    fn invalid_expressions_are_refused() {
        for bad in ["", "every day", "0 0 25 * * *", "0 61 * * * *", "* * *"] {
            assert!(CronSchedule::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
