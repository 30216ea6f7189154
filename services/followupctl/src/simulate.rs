//! `followupctl simulate`: publishes inbound messages on NATS as upstream ESAS jobs would:
//! the contract examples, or a simulated admission day of applicant transfers.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, Datelike as _, Utc};
use clap::{Args, Subcommand};
use followup_messaging::{ensure_streams, publish_event, CloudEvent, JetStream, Streams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What to publish.
#[derive(Debug, Subcommand)]
pub enum SimulateCmd {
    /// Publishes the contract examples (docs/contracts/examples), in an order that shows each
    /// effect: two failed transfers, a guest data share request, two structure date changes,
    /// then the successful rerun that resolves the first exception.
    ///
    /// Example: followupctl simulate examples
    Examples,
    /// Publishes a simulated admission day of applicant transfers.
    ///
    /// Example: followupctl simulate day --transfers 500 --defects 0.3 --failures 0.05
    Day(DayArgs),
}

/// Settings of a simulated admission day.
#[derive(Debug, Clone, Args)]
pub struct DayArgs {
    /// Applications transferred.
    #[arg(long, default_value_t = 200)]
    pub transfers: usize,
    /// Share of transfers that complete with defects (missing mandatory SUEs).
    #[arg(long, default_value_t = 0.3)]
    pub defects: f64,
    /// Share of transfers that fail.
    #[arg(long, default_value_t = 0.05)]
    pub failures: f64,
    /// Share of defective or failed transfers that a later run fixes (a `succeeded` message).
    #[arg(long, default_value_t = 0.5)]
    pub fixed_later: f64,
    /// Institutions, comma-separated.
    #[arg(long, default_value = "KP,UCL,VIA,UCN,UCSYD,PHA")]
    pub institutions: String,
    /// Seed of the random choices, so a day can be published again identically.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Spread the transfers over this many days before now (0: all now), so that the
    /// exceptions of the oldest ones are already past their due date.
    #[arg(long, default_value_t = 0)]
    pub spread_days: u32,
    /// Guest students' data share requests to the institutions (each one task).
    #[arg(long, default_value_t = 0)]
    pub guest_requests: usize,
    /// Approved changes of education structures' start dates at the institutions (each a
    /// notification for their subscribers).
    #[arg(long, default_value_t = 0)]
    pub date_changes: usize,
}

/// The contract examples, embedded from docs/contracts/examples.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "applicant_transfer.completed_with_defects",
        include_str!(
            "../../../docs/contracts/examples/applicant_transfer.completed_with_defects.json"
        ),
    ),
    (
        "applicant_transfer.failed",
        include_str!("../../../docs/contracts/examples/applicant_transfer.failed.json"),
    ),
    (
        "guest_student.data_share_requested",
        include_str!("../../../docs/contracts/examples/guest_student.data_share_requested.json"),
    ),
    (
        "education_structure.dates_changed",
        include_str!("../../../docs/contracts/examples/education_structure.dates_changed.json"),
    ),
    (
        "education_structure.dates_changed.draft",
        include_str!(
            "../../../docs/contracts/examples/education_structure.dates_changed.draft.json"
        ),
    ),
    (
        "applicant_transfer.succeeded",
        include_str!("../../../docs/contracts/examples/applicant_transfer.succeeded.json"),
    ),
];

pub async fn run(cmd: SimulateCmd, url: &str, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let client = followup_messaging::connect(url, Duration::from_secs(10), shutdown).await?;
    let js = async_nats::jetstream::new(client);
    ensure_streams(&js, &Streams::default()).await?;
    match cmd {
        SimulateCmd::Examples => {
            for (name, text) in EXAMPLES {
                let (subject, stored_before) = publish_json(&js, text.as_bytes()).await?;
                println!(
                    "published {name:<42} on {subject}{}",
                    if stored_before {
                        " (already stored: de-duplicated)"
                    } else {
                        ""
                    }
                );
            }
        }
        SimulateCmd::Day(args) => {
            let day = admission_day(&args, Utc::now());
            let summary = day.summary();
            publish_all(&js, &day.messages).await?;
            println!("published {} messages: {summary}", day.messages.len());
        }
    }
    Ok(())
}

/// Publishes one CloudEvent on the subject its type names, with `Nats-Msg-Id` = its id.
/// Returns the subject and whether JetStream had it already.
pub async fn publish_json(js: &JetStream, payload: &[u8]) -> anyhow::Result<(String, bool)> {
    let event = CloudEvent::parse(payload).context("an example is not a valid CloudEvent")?;
    let subject = event.nats_subject().context("the type names no subject")?;
    let (_, duplicate) = publish_event(
        js,
        subject.clone(),
        &event.id,
        HeaderMap::new(),
        Bytes::copy_from_slice(payload),
    )
    .await?;
    Ok((subject, duplicate))
}

/// Publishes many messages, keeping up to 256 publishes in flight.
pub async fn publish_all(js: &JetStream, messages: &[Outbound]) -> anyhow::Result<()> {
    use futures::StreamExt;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(messages)
        .map(|m| async move {
            publish_event(
                js,
                m.subject.clone(),
                &m.id,
                HeaderMap::new(),
                m.payload.clone(),
            )
            .await?;
            Ok(())
        })
        .buffer_unordered(256)
        .collect()
        .await;
    results.into_iter().collect()
}

/// A message ready to publish.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Its CloudEvent id (and `Nats-Msg-Id`).
    pub id: String,
    /// The subject to publish on.
    pub subject: String,
    /// The CloudEvent JSON.
    pub payload: Bytes,
    /// Whether it raises an exception (a defective or failed transfer).
    pub raises: bool,
}

/// A simulated admission day.
#[derive(Debug)]
pub struct Day {
    /// The messages, in publishing order.
    pub messages: Vec<Outbound>,
    /// Applications whose transfer had defects or failed (each one exception).
    pub exceptions: usize,
    /// Of those, how many a later run fixed.
    pub fixed: usize,
    /// Guest data share requests (each one task).
    pub tasks: usize,
    /// Education structure date changes.
    pub date_changes: usize,
}

impl Day {
    fn summary(&self) -> String {
        let mut text = format!(
            "{} exceptions expected, {} of them resolved by a later successful run",
            self.exceptions, self.fixed
        );
        if self.tasks > 0 {
            text.push_str(&format!("; {} data share task(s)", self.tasks));
        }
        if self.date_changes > 0 {
            text.push_str(&format!("; {} structure date change(s)", self.date_changes));
        }
        text
    }
}

const EDUCATIONS: &[(&str, &str, &[&str])] = &[
    (
        "Sygeplejerskeuddannelsen",
        "SYG",
        &[
            "Anatomi og fysiologi",
            "Klinisk undervisning 1",
            "Sygepleje – grundlæggende",
            "Farmakologi",
        ],
    ),
    (
        "Pædagoguddannelsen",
        "PAED",
        &[
            "Pædagogik og læring",
            "Praktik 1",
            "Dagtilbudspædagogik",
            "Kommunikation og samarbejde",
        ],
    ),
    (
        "Læreruddannelsen",
        "LAE",
        &[
            "Almen dannelse (KLM)",
            "Praktik niveau 1",
            "Dansk 1.-6. klassetrin",
            "Matematik 4.-10. klassetrin",
        ],
    ),
    (
        "Socialrådgiveruddannelsen",
        "SOC",
        &[
            "Socialt arbejde",
            "Forvaltningsret",
            "Praktik",
            "Socialpolitik",
        ],
    ),
    (
        "Fysioterapeutuddannelsen",
        "FYS",
        &[
            "Bevægeapparatets anatomi",
            "Klinisk undervisning 1",
            "Træningsfysiologi",
        ],
    ),
    (
        "Bygningskonstruktøruddannelsen",
        "BYG",
        &["Byggeteknik", "Projektering 1", "Materialelære"],
    ),
];

/// A day of `args.transfers` applicant transfers at `at`, the same for the same seed.
pub fn admission_day(args: &DayArgs, at: DateTime<Utc>) -> Day {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let institutions: Vec<&str> = args
        .institutions
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let run = format!("run-{}", at.format("%Y-%m-%d-%H%M%S"));
    let mut messages = Vec::with_capacity(args.transfers * 2);
    let mut later = Vec::new();
    let (mut exceptions, mut fixed) = (0, 0);
    for n in 0..args.transfers {
        let institution = institutions[n % institutions.len()];
        let (education, code, sues) = EDUCATIONS[rng.random_range(0..EDUCATIONS.len())];
        let time = if args.spread_days == 0 {
            at
        } else {
            at - chrono::Duration::minutes(
                rng.random_range(0..i64::from(args.spread_days) * 24 * 60),
            )
        };
        let application = format!(
            "APP-{}-{:06}",
            at.format("%Y"),
            args.seed % 1000 * 1_000_000 + n as u64
        );
        let roll: f64 = rng.random();
        let outcome = if roll < args.failures {
            "failed"
        } else if roll < args.failures + args.defects {
            "completed_with_defects"
        } else {
            "succeeded"
        };
        let mut missing = Vec::new();
        let mut errors = Vec::new();
        match outcome {
            "completed_with_defects" => {
                let count = rng.random_range(1..=2.min(sues.len()));
                for (i, name) in sues.iter().take(count).enumerate() {
                    missing.push(json!({ "sue_id": format!("SUE-{code}-{}", 1001 + i), "name": name, "semester": 1 }));
                }
                errors.push(json!({ "code": "MANDATORY_SUE_NOT_CREATED_AS_GUE", "message": format!("{count} obligatoriske SUE'er blev ikke oprettet som GUE'er") }));
            }
            "failed" => errors.push(json!({ "code": "ADMISSION_NOT_CONFIRMED", "message": "Optagelsesstatus er ikke Bekræftet" })),
            _ => {}
        }
        let data = json!({
            "job_run_id": run,
            "application_id": application,
            "applicant_id": format!("ANS-{}", 100_000 + n),
            "student_id": format!("STU-{}", 500_000 + n),
            "study_programme_id": format!("SF-{}-{}", at.format("%Y"), 70_000 + n),
            "education": education,
            "missing_mandatory_sues": missing,
            "errors": errors,
        });
        let raises = outcome != "succeeded";
        messages.push(transfer(
            institution,
            outcome,
            &application,
            &data,
            time,
            raises,
        ));
        if raises {
            exceptions += 1;
            if rng.random::<f64>() < args.fixed_later {
                fixed += 1;
                let mut fixed_data = data;
                fixed_data["job_run_id"] = json!(format!("{run}-rerun"));
                fixed_data["missing_mandatory_sues"] = json!([]);
                fixed_data["errors"] = json!([]);
                later.push(transfer(
                    institution,
                    "succeeded",
                    &application,
                    &fixed_data,
                    time + chrono::Duration::hours(2),
                    false,
                ));
            }
        }
    }
    messages.extend(later);
    for n in 0..args.guest_requests {
        let institution = institutions[n % institutions.len()];
        let requesting = GUEST_HOSTS
            .iter()
            .filter(|host| **host != institution)
            .nth(rng.random_range(0..GUEST_HOSTS.len() - 1))
            .copied()
            .unwrap_or("UCL");
        let (education, _, _) = EDUCATIONS[rng.random_range(0..EDUCATIONS.len())];
        let reason = format!(
            "Gæstestuderende på {}. semester, {education}",
            rng.random_range(1..=6)
        );
        messages.push(guest_request(
            institution,
            requesting,
            &reason,
            &format!("{}-{:03}", args.seed % 1000, n + 1),
            at,
        ));
    }
    for n in 0..args.date_changes {
        let institution = institutions[n % institutions.len()];
        // Each education in turn, Sygeplejerskeuddannelsen first.
        let (education, code, _) = EDUCATIONS[n % EDUCATIONS.len()];
        let weeks = rng.random_range(1..=3);
        messages.push(date_change(institution, education, code, weeks, at));
    }
    Day {
        messages,
        exceptions,
        fixed,
        tasks: args.guest_requests,
        date_changes: args.date_changes,
    }
}

/// An approved education structure whose next spring start moves `weeks` weeks later.
fn date_change(
    institution: &str,
    education: &str,
    code: &str,
    weeks: i64,
    at: DateTime<Utc>,
) -> Outbound {
    let id = Uuid::new_v4().to_string();
    // The next spring start: 1 February of the coming year.
    let year = at.year() + 1;
    let old_start = chrono::NaiveDate::from_ymd_opt(year, 2, 1).expect("a date");
    let new_start = old_start + chrono::Duration::weeks(weeks);
    let end = chrono::NaiveDate::from_ymd_opt(year + 3, 6, 30).expect("a date");
    let structure = format!("GUS-{code}-{year}F");
    let event = json!({
        "specversion": "1.0",
        "id": id,
        "source": "esas/education-structures",
        "type": "dk.esas.event.education_structure.dates_changed",
        "time": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "subject": format!("education_structure/{structure}"),
        "datacontenttype": "application/json",
        "institution": institution,
        "data": {
            "structure_id": structure,
            "name": format!("{education}, grundstruktur forår {year}"),
            "education": education,
            "status": "godkendt",
            "old_start": old_start.to_string(),
            "new_start": new_start.to_string(),
            "old_end": end.to_string(),
            "new_end": end.to_string(),
        },
    });
    Outbound {
        id,
        subject: "esas.events.education_structure.dates_changed".to_owned(),
        payload: Bytes::from(serde_json::to_vec(&event).expect("JSON")),
        raises: false,
    }
}

/// Institutions whose students come as guests.
const GUEST_HOSTS: &[&str] = &["KP", "UCL", "VIA", "UCN", "UCSYD", "Absalon"];

/// A guest student's data share request from `requesting` to the home `institution`.
fn guest_request(
    institution: &str,
    requesting: &str,
    reason: &str,
    number: &str,
    at: DateTime<Utc>,
) -> Outbound {
    let id = Uuid::new_v4().to_string();
    let year = at.format("%Y");
    let event = json!({
        "specversion": "1.0",
        "id": id,
        "source": "esas/guest-students",
        "type": "dk.esas.event.guest_student.data_share_requested",
        "time": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "subject": format!("guest_student/GST-{year}-{number}"),
        "datacontenttype": "application/json",
        "institution": institution,
        "data": {
            "request_id": format!("DSR-{year}-{number}"),
            "guest_student_id": format!("GST-{year}-{number}"),
            "requesting_institution": requesting,
            "home_institution": institution,
            "reason": reason,
        },
    });
    Outbound {
        id,
        subject: "esas.events.guest_student.data_share_requested".to_owned(),
        payload: Bytes::from(serde_json::to_vec(&event).expect("JSON")),
        raises: false,
    }
}

fn transfer(
    institution: &str,
    outcome: &str,
    application: &str,
    data: &Value,
    at: DateTime<Utc>,
    raises: bool,
) -> Outbound {
    let id = Uuid::new_v4().to_string();
    let event = json!({
        "specversion": "1.0",
        "id": id,
        "source": "esas/jobs/applicant-transfer",
        "type": format!("dk.esas.job.applicant_transfer.{outcome}"),
        "time": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "subject": format!("application/{application}"),
        "datacontenttype": "application/json",
        "institution": institution,
        "data": data,
    });
    Outbound {
        id,
        subject: format!("esas.jobs.applicant_transfer.{outcome}"),
        payload: Bytes::from(serde_json::to_vec(&event).expect("JSON")),
        raises,
    }
}
