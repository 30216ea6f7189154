//! The scheduler role (`followupd scheduler`): cron jobs that watch due dates (design
//! section 5). Schedules are cron expressions read in Europe/Copenhagen, so a job at 07:00
//! runs at 07:00 local time in winter and in summer. The built-in jobs:
//!
//! - `overdue`: open follow-ups whose due date has passed are marked overdue (an event) and
//!   their owner is notified;
//! - `remind`: owners are reminded a while before the due date;
//! - `digest`: each user gets a daily digest of their open and overdue follow-ups (and, with
//!   the notifier, the digests of their `daily_digest` subscriptions);
//! - `escalate`: exceptions overdue for long get priority high and are shared with a team.
//!
//! # Several schedulers, downtime, failures
//!
//! Any number of scheduler processes may run the same schedule. A firing is identified by
//! (job, tick) and claimed in the table `scheduler_firings` by exactly one of them; and
//! whatever a job stores has event ids derived from what it acts on, so even a firing run
//! twice (a claim taken over after its lease ran out, an operator's [`Scheduler::fire`])
//! appends nothing new. Only the latest tick of a job is ever claimed: after downtime a
//! missed firing runs once. A failed firing is retried with back-off (logged each time);
//! jobs run independently, so one failing never stops the others.
//!
//! # Time
//!
//! The scheduler takes a [`Clock`]; [`Scheduler::run_due`] takes the moment to act at, and
//! [`Scheduler::next_due`] says when the next tick is, so tests step through days of
//! schedule in milliseconds, without sleeping.
//!
//! # Layout
//! - [`schedule`]: [`CronSchedule`], a cron expression in Europe/Copenhagen, and what it does
//!   on the nights the clocks change.
//! - [`config`]: [`SchedulerConfig`], the schedules and settings, from the environment.
//! - [`clock`]: [`Clock`], [`SystemClock`], [`ManualClock`].
//! - [`scheduler`]: [`Scheduler`]: `run_due` (the step tests call), `run` (the loop).
//! - [`firings`]: the table `scheduler_firings` (claims, leases, retries).
//! - [`jobs`]: the [`Job`] trait and the built-in jobs.
//! - [`notice`]: the notifications' Danish texts and derived ids.
//! - The schema is `migrations/*_scheduler.sql`.

pub mod clock;
pub mod config;
pub mod firings;
pub mod jobs;
pub mod notice;
pub mod schedule;
pub mod scheduler;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ConfigError, JobName, SchedulerConfig};
pub use jobs::{Firing, Job, JobContext, JobError, JobReport};
pub use schedule::{CronSchedule, TIME_ZONE};
pub use scheduler::{DueReport, FiringOutcome, FiringResult, ScheduledJob, Scheduler};
