//! Evaluating events: matching, conditions, templates, sections, resolving, and the errors
//! that send a message to the dead-letter stream.

mod common;

use common::{at, example};
use followup_rules::{Effect, EvaluateError, Priority, Raise, Resolve, RuleSet};
use serde_json::json;

/// The rules from `text`, which must be valid.
fn rules(text: &str) -> RuleSet {
    RuleSet::from_toml(text).unwrap_or_else(|e| panic!("{e}"))
}

/// The raise in `effects`, which must be exactly one.
#[track_caller]
fn only_raise(effects: Vec<Effect>) -> Raise {
    match <[Effect; 1]>::try_from(effects) {
        Ok([Effect::Raise(raise)]) => raise,
        other => panic!("expected one raise, got {other:?}"),
    }
}

/// A rule raising on every applicant transfer outcome, resolved by success.
const WILDCARD_RULE: &str = r#"
[[rule]]
id = "transfer"
on = "dk.esas.job.applicant_transfer.*"
kind = "exception"
key = "{data.application_id}"
subject = "Overførsel {data.application_id}"
owner_team = "admissions"
resolve = [{ on = "dk.esas.job.applicant_transfer.succeeded", key = "{data.application_id}" }]
"#;

#[test]
fn missing_required_data_names_the_field() {
    let message = example("applicant_transfer.completed_with_defects").without_data("education");
    assert_eq!(
        RuleSet::builtin().evaluate(&message.view()),
        Err(EvaluateError::MissingData {
            rule_id: "applicant-transfer-defects".to_owned(),
            field: "data.education".to_owned(),
        })
    );
}

#[test]
fn null_or_blank_required_data_counts_as_missing() {
    for value in [json!(null), json!("  ")] {
        let message = example("guest_student.data_share_requested").with_data("request_id", value);
        assert_eq!(
            RuleSet::builtin().evaluate(&message.view()),
            Err(EvaluateError::MissingData {
                rule_id: "guest-student-data-share".to_owned(),
                field: "data.request_id".to_owned(),
            })
        );
    }
}

#[test]
fn missing_resolve_key_data_is_an_error_too() {
    let message = example("applicant_transfer.succeeded").without_data("application_id");
    let error = RuleSet::builtin().evaluate(&message.view()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "rule `applicant-transfer-defects`: the event lacks `data.application_id`"
    );
}

#[test]
fn a_placeholder_without_data_is_missing_data_even_when_not_required() {
    let rules = rules(
        r#"
[[rule]]
id = "r"
on = "dk.esas.job.x.failed"
kind = "task"
key = "k"
subject = "Hold {data.team.name}"
owner_team = "t"
"#,
    );
    let message = example("applicant_transfer.failed").with_type("dk.esas.job.x.failed");
    assert_eq!(
        rules.evaluate(&message.view()),
        Err(EvaluateError::MissingData {
            rule_id: "r".to_owned(),
            field: "data.team.name".to_owned(),
        })
    );
}

#[test]
fn a_section_list_of_the_wrong_type_is_wrong_type() {
    let message = example("applicant_transfer.completed_with_defects")
        .with_data("missing_mandatory_sues", json!("ingen"));
    assert_eq!(
        RuleSet::builtin().evaluate(&message.view()),
        Err(EvaluateError::WrongType {
            rule_id: "applicant-transfer-defects".to_owned(),
            field: "data.missing_mandatory_sues".to_owned(),
            expected: "a list",
        })
    );
}

#[test]
fn a_placeholder_holding_a_list_is_wrong_type() {
    let message = example("applicant_transfer.completed_with_defects")
        .with_data("education", json!(["Sygepleje"]));
    assert!(matches!(
        RuleSet::builtin().evaluate(&message.view()),
        Err(EvaluateError::WrongType { field, .. }) if field == "data.education"
    ));
}

#[test]
fn an_item_field_holding_an_object_is_wrong_type_naming_the_element() {
    let message = example("applicant_transfer.completed_with_defects").with_data(
        "errors",
        json!([{ "code": "A", "message": "ok" }, { "code": { "nested": 1 }, "message": "x" }]),
    );
    assert!(matches!(
        RuleSet::builtin().evaluate(&message.view()),
        Err(EvaluateError::WrongType { field, .. }) if field == "data.errors[1].code"
    ));
}

#[test]
fn an_absent_section_list_leaves_the_section_out() {
    let message =
        example("applicant_transfer.completed_with_defects").without_data("missing_mandatory_sues");
    let raise = only_raise(RuleSet::builtin().evaluate(&message.view()).unwrap());
    assert!(!raise.description.contains("Manglende obligatoriske"));
    assert!(raise
        .description
        .contains("Fejl:\n- MANDATORY_SUE_NOT_CREATED_AS_GUE"));
}

#[test]
fn an_element_lacking_an_item_field_renders_it_as_nothing() {
    let message = example("applicant_transfer.completed_with_defects").with_data(
        "missing_mandatory_sues",
        json!([{ "sue_id": "SUE-1", "semester": 2 }]),
    );
    let raise = only_raise(RuleSet::builtin().evaluate(&message.view()).unwrap());
    assert!(
        raise.description.contains("\n-  (SUE-1), 2. semester"),
        "{}",
        raise.description
    );
}

#[test]
fn wildcard_rule_raises_for_every_outcome_of_its_job_only() {
    let rules = rules(WILDCARD_RULE);
    for name in [
        "applicant_transfer.completed_with_defects",
        "applicant_transfer.failed",
    ] {
        let raise = only_raise(rules.evaluate(&example(name).view()).unwrap());
        assert_eq!(raise.rule_id, "transfer", "{name}");
    }
    let other_job = example("applicant_transfer.failed").with_type("dk.esas.job.other_job.failed");
    assert_eq!(rules.evaluate(&other_job.view()), Ok(vec![]));
    assert!(rules.handles("dk.esas.job.applicant_transfer.anything"));
    assert!(!rules.handles("dk.esas.job.other_job.failed"));
    assert!(!rules.handles("dk.esas.event.applicant_transfer.failed"));
}

#[test]
fn resolving_wins_over_raising_when_both_match() {
    let rules = rules(WILDCARD_RULE);
    assert_eq!(
        rules.evaluate(&example("applicant_transfer.succeeded").view()),
        Ok(vec![Effect::Resolve(Resolve {
            rule_id: "transfer".to_owned(),
            key: "APP-2026-104711".to_owned(),
        })])
    );
}

#[test]
fn a_list_of_patterns_matches_any_of_them() {
    let rules = RuleSet::builtin();
    let rule = &rules.rules()[0];
    assert_eq!(rule.on().count(), 2);
    assert!(rule.handles("dk.esas.job.applicant_transfer.failed"));
    assert!(rule.handles("dk.esas.job.applicant_transfer.completed_with_defects"));
    assert!(rule.handles("dk.esas.job.applicant_transfer.succeeded"));
    assert!(!rule.handles("dk.esas.job.applicant_transfer.started"));
}

#[test]
fn conditions_decide_whether_a_rule_applies() {
    // Not a built-in rule (notifications are another service's), but the approved and draft
    // structure examples show a condition at work.
    let rules = rules(
        r#"
[[rule]]
id = "approved-structure-dates"
on = "dk.esas.event.education_structure.dates_changed"
when = [{ field = "data.status", equals = "godkendt" }]
require = ["data.structure_id"]
kind = "task"
key = "{data.structure_id}"
subject = "Datoer ændret for {data.name}"
description = "Start: {data.old_start} → {data.new_start}"
owner_team = "studieadministration"
"#,
    );
    let approved = only_raise(
        rules
            .evaluate(&example("education_structure.dates_changed").view())
            .unwrap(),
    );
    assert_eq!(approved.key, "GUS-SYG-2027F");
    assert_eq!(approved.description, "Start: 2027-02-01 → 2027-02-08");
    assert_eq!(
        rules.evaluate(&example("education_structure.dates_changed.draft").view()),
        Ok(vec![])
    );
    // A condition that does not hold keeps the rule away even when required data is missing.
    let draft_without_id =
        example("education_structure.dates_changed.draft").without_data("structure_id");
    assert_eq!(rules.evaluate(&draft_without_id.view()), Ok(vec![]));
}

#[test]
fn owner_team_follows_the_institution_with_a_default() {
    let rules = rules(
        r#"
[[rule]]
id = "share"
on = "dk.esas.event.guest_student.data_share_requested"
kind = "task"
key = "{data.request_id}"
subject = "Del {data.guest_student_id}"
owner_team = { default = "studieadministration", UCL = "gaestestuderende" }
"#,
    );
    let at_ucl = example("guest_student.data_share_requested");
    let mut at_via = at_ucl.clone();
    at_via.institution = "VIA".to_owned();
    assert_eq!(
        only_raise(rules.evaluate(&at_ucl.view()).unwrap()).owner_team,
        "gaestestuderende"
    );
    assert_eq!(
        only_raise(rules.evaluate(&at_via.view()).unwrap()).owner_team,
        "studieadministration"
    );
}

#[test]
fn envelope_placeholders_numbers_and_defaults_render() {
    let rules = rules(
        r#"
[[rule]]
id = "r"
on = "dk.esas.job.applicant_transfer.completed_with_defects"
kind = "exception"
key = "{institution}/{data.missing_mandatory_sues.0.sue_id}"
subject = "{{{type}}} semester {data.missing_mandatory_sues.0.semester}"
description = "{id} {subject}"
owner_team = "t"
due_in = "1d12h"
priority = "low"
"#,
    );
    let raise = only_raise(
        rules
            .evaluate(&example("applicant_transfer.completed_with_defects").view())
            .unwrap(),
    );
    assert_eq!(raise.key, "KP/SUE-SYG-1001");
    assert_eq!(
        raise.subject,
        "{dk.esas.job.applicant_transfer.completed_with_defects} semester 1"
    );
    assert_eq!(
        raise.description,
        "5b0c1d2e-8f4a-4c61-9d3e-2a7f1b6c9e01 application/APP-2026-104711"
    );
    assert_eq!(raise.job, "esas/jobs/applicant-transfer");
    assert_eq!(raise.due, Some(at("2026-07-29T21:14:03Z")));
    assert_eq!(raise.priority, Priority::Low);
    assert_eq!(raise.regarding, None);
}

#[test]
fn a_rule_without_due_in_sets_no_due_date() {
    let rules = rules(WILDCARD_RULE);
    let raise = only_raise(
        rules
            .evaluate(&example("applicant_transfer.failed").view())
            .unwrap(),
    );
    assert_eq!(raise.due, None);
    assert_eq!(raise.priority, Priority::Normal);
}

#[test]
fn every_matching_rule_contributes_in_file_order() {
    let text = format!(
        "{WILDCARD_RULE}\n{}",
        WILDCARD_RULE.replace("id = \"transfer\"", "id = \"transfer-copy\"")
    );
    let effects = rules(&text)
        .evaluate(&example("applicant_transfer.failed").view())
        .unwrap();
    let ids: Vec<&str> = effects
        .iter()
        .map(|effect| match effect {
            Effect::Raise(raise) => raise.rule_id.as_str(),
            Effect::Resolve(resolve) => resolve.rule_id.as_str(),
        })
        .collect();
    assert_eq!(ids, ["transfer", "transfer-copy"]);
}

#[test]
fn resolve_entries_can_have_conditions() {
    let rules = rules(&WILDCARD_RULE.replace(
        "key = \"{data.application_id}\" }]",
        "key = \"{data.application_id}\", when = [{ field = \"data.errors\", not_empty = false }] }]",
    ));
    assert!(matches!(
        rules
            .evaluate(&example("applicant_transfer.succeeded").view())
            .unwrap()
            .as_slice(),
        [Effect::Resolve(_)]
    ));
    // A "success" that still reports errors does not resolve; it raises instead (the wildcard
    // `on` matches it).
    let with_errors = example("applicant_transfer.succeeded")
        .with_data("errors", json!([{ "code": "X", "message": "y" }]));
    assert!(matches!(
        rules.evaluate(&with_errors.view()).unwrap().as_slice(),
        [Effect::Raise(_)]
    ));
}

#[test]
fn effects_serialize_with_snake_case_names() {
    let effects = RuleSet::builtin()
        .evaluate(&example("applicant_transfer.succeeded").view())
        .unwrap();
    assert_eq!(
        serde_json::to_value(&effects).unwrap(),
        json!([{ "effect": "resolve", "rule_id": "applicant-transfer-defects", "key": "APP-2026-104711" }])
    );
    let raise = only_raise(
        RuleSet::builtin()
            .evaluate(&example("guest_student.data_share_requested").view())
            .unwrap(),
    );
    let value = serde_json::to_value(Effect::Raise(raise)).unwrap();
    assert_eq!(value["kind"], "task");
    assert_eq!(value["priority"], "normal");
}
