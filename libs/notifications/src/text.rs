//! What a notification says, in Danish, for each topic: a caseworker reads the subject in a
//! list and should understand it without opening the notification.

use chrono::NaiveDate;
use serde_json::Value;

/// The text of a notification about one inbound event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line: what changed.
    pub subject: String,
    /// The details.
    pub description: String,
    /// The ESAS record it is about, as (type, id).
    pub regarding: Option<(String, String)>,
}

/// Why an event of a known topic cannot be rendered: its data lacks a field, or a field has
/// the wrong shape. The message is dead-lettered with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data.{field}: {problem}")]
pub struct MissingData {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// What an event of `topic` with `data` notifies: `Ok(None)` when it notifies nobody (an
/// education structure that is not approved).
pub fn render(topic: &str, data: &Value) -> Result<Option<Rendered>, MissingData> {
    match topic {
        "education_structure.dates_changed" => structure_dates_changed(data),
        "guest_student.data_share_requested" => data_share_requested(data).map(Some),
        _ => Ok(None),
    }
}

/// "Startdato for Sygeplejerskeuddannelsen, grundstruktur forår 2027 flyttet fra 1. februar
/// 2027 til 8. februar 2027".
fn structure_dates_changed(data: &Value) -> Result<Option<Rendered>, MissingData> {
    let structure_id = text(data, "structure_id")?;
    let name = text(data, "name")?;
    let education = text(data, "education")?;
    let status = text(data, "status")?;
    let old_start = date(data, "old_start")?;
    let new_start = date(data, "new_start")?;
    let old_end = date(data, "old_end")?;
    let new_end = date(data, "new_end")?;
    // Only approved structures are real plans; drafts change all the time.
    if status != "godkendt" {
        return Ok(None);
    }
    let start_moved = old_start != new_start;
    let end_moved = old_end != new_end;
    let subject = match (start_moved, end_moved) {
        (true, false) => format!(
            "Startdato for {name} flyttet fra {} til {}",
            danish_date(old_start),
            danish_date(new_start)
        ),
        (false, true) => format!(
            "Slutdato for {name} flyttet fra {} til {}",
            danish_date(old_end),
            danish_date(new_end)
        ),
        (true, true) => format!(
            "Start- og slutdato for {name} flyttet: start {}, slut {}",
            danish_date(new_start),
            danish_date(new_end)
        ),
        (false, false) => format!("Datoer for {name} bekræftet uændret"),
    };
    let description = format!(
        "Uddannelsesstrukturen {name} ({structure_id}) for {education} er godkendt med nye \
         datoer.\nStart: {} → {}\nSlut: {} → {}",
        danish_date(old_start),
        danish_date(new_start),
        danish_date(old_end),
        danish_date(new_end)
    );
    Ok(Some(Rendered {
        subject,
        description,
        regarding: Some(("education_structure".into(), structure_id.to_owned())),
    }))
}

/// "Anmodning om deling af data for gæstestuderende GST-2026-0042 fra KP".
fn data_share_requested(data: &Value) -> Result<Rendered, MissingData> {
    let request_id = text(data, "request_id")?;
    let student = text(data, "guest_student_id")?;
    let requesting = text(data, "requesting_institution")?;
    let home = text(data, "home_institution")?;
    let reason = data.get("reason").and_then(Value::as_str).unwrap_or("");
    Ok(Rendered {
        subject: format!(
            "Anmodning om deling af data for gæstestuderende {student} fra {requesting}"
        ),
        description: format!(
            "{requesting} anmoder {home} om at dele data for gæstestuderende {student} \
             (anmodning {request_id}). Begrundelse: {reason}"
        ),
        regarding: Some(("guest_student".into(), student.to_owned())),
    })
}

/// A day in Danish: "1. februar 2027".
pub fn danish_date(date: NaiveDate) -> String {
    use chrono::Datelike;
    const MONTHS: [&str; 12] = [
        "januar",
        "februar",
        "marts",
        "april",
        "maj",
        "juni",
        "juli",
        "august",
        "september",
        "oktober",
        "november",
        "december",
    ];
    format!(
        "{}. {} {}",
        date.day(),
        MONTHS[date.month0() as usize],
        date.year()
    )
}

fn text<'a>(data: &'a Value, field: &'static str) -> Result<&'a str, MissingData> {
    match data.get(field) {
        None | Some(Value::Null) => Err(MissingData {
            field,
            problem: "is missing",
        }),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(MissingData {
            field,
            problem: "must be a non-empty string",
        }),
    }
}

fn date(data: &Value, field: &'static str) -> Result<NaiveDate, MissingData> {
    text(data, field)?.parse().map_err(|_| MissingData {
        field,
        problem: "must be a date (YYYY-MM-DD)",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn structure(status: &str, new_start: &str, new_end: &str) -> Value {
        json!({
            "structure_id": "GUS-SYG-2027F",
            "name": "Sygeplejerskeuddannelsen, grundstruktur forår 2027",
            "education": "Sygeplejerskeuddannelsen",
            "status": status,
            "old_start": "2027-02-01",
            "new_start": new_start,
            "old_end": "2030-06-30",
            "new_end": new_end,
        })
    }

    #[test]
    fn a_moved_start_date_is_said_in_plain_danish() {
        let rendered = render(
            "education_structure.dates_changed",
            &structure("godkendt", "2027-02-08", "2030-06-30"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            rendered.subject,
            "Startdato for Sygeplejerskeuddannelsen, grundstruktur forår 2027 flyttet fra \
             1. februar 2027 til 8. februar 2027"
        );
        assert!(rendered.description.contains("GUS-SYG-2027F"));
    }

    #[test]
    fn both_dates_moved_names_both() {
        let rendered = render(
            "education_structure.dates_changed",
            &structure("godkendt", "2027-03-01", "2030-08-31"),
        )
        .unwrap()
        .unwrap();
        assert!(rendered
            .subject
            .contains("start 1. marts 2027, slut 31. august 2030"));
    }

    #[test]
    fn a_draft_structure_notifies_nobody() {
        let draft = structure("kladde", "2027-02-08", "2030-06-30");
        assert_eq!(
            render("education_structure.dates_changed", &draft),
            Ok(None)
        );
    }

    #[test]
    fn a_missing_or_malformed_field_is_named() {
        let mut data = structure("godkendt", "2027-02-08", "2030-06-30");
        data["new_start"] = json!("8/2 2027");
        let error = render("education_structure.dates_changed", &data).unwrap_err();
        assert_eq!(
            error.to_string(),
            "data.new_start: must be a date (YYYY-MM-DD)"
        );
        data.as_object_mut().unwrap().remove("name");
        let error = render("education_structure.dates_changed", &data).unwrap_err();
        assert_eq!(error.field, "name");
    }
}
