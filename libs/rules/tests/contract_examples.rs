//! The built-in rules against the contract examples: each example gives exactly the effect the
//! contract README promises.

mod common;

use common::{at, example};
use followup_rules::{Effect, Priority, Raise, RaiseKind, Resolve, RuleSet};

/// Evaluates a contract example with the built-in rules.
fn effects_of(name: &str) -> Vec<Effect> {
    RuleSet::builtin()
        .evaluate(&example(name).view())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The single raise an example must give.
fn single_raise(name: &str) -> Raise {
    match effects_of(name).as_slice() {
        [Effect::Raise(raise)] => raise.clone(),
        other => panic!("{name}: expected one raise, got {other:?}"),
    }
}

#[test]
fn builtin_rules_load_and_cover_the_two_contract_rules() {
    let rules = RuleSet::builtin();
    let ids: Vec<&str> = rules.rules().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["applicant-transfer-defects", "guest-student-data-share"]
    );
}

#[test]
fn transfer_with_defects_raises_one_exception_naming_both_missing_sues() {
    let raise = single_raise("applicant_transfer.completed_with_defects");
    assert_eq!(
        raise,
        Raise {
            rule_id: "applicant-transfer-defects".to_owned(),
            key: "APP-2026-104711".to_owned(),
            kind: RaiseKind::Exception,
            subject: "Fejl ved overførsel af ansøgning APP-2026-104711 til studieforløb \
                      (Sygeplejerskeuddannelsen)"
                .to_owned(),
            description: "\
Overførslen af ansøger til studerende og studieforløb blev ikke gennemført fejlfrit for \
ansøgning APP-2026-104711.

Uddannelse: Sygeplejerskeuddannelsen
Ansøger: ANS-88123
Jobkørsel: run-2026-07-28-0900

Manglende obligatoriske SUE'er (ikke oprettet som GUE):
- Anatomi og fysiologi (SUE-SYG-1001), 1. semester
- Klinisk undervisning 1 (SUE-SYG-1004), 1. semester

Fejl:
- MANDATORY_SUE_NOT_CREATED_AS_GUE: 2 obligatoriske SUE'er blev ikke oprettet som GUE'er"
                .to_owned(),
            regarding: Some(("application".to_owned(), "APP-2026-104711".to_owned())),
            person: Some(("applicant".to_owned(), "ANS-88123".to_owned())),
            owner_team: "admissions".to_owned(),
            due: Some(at("2026-07-31T09:14:03Z")),
            priority: Priority::High,
            job: "run-2026-07-28-0900".to_owned(),
        }
    );
}

#[test]
fn failed_transfer_raises_one_exception_with_the_error_text_and_no_empty_sue_section() {
    let raise = single_raise("applicant_transfer.failed");
    assert_eq!(raise.rule_id, "applicant-transfer-defects");
    assert_eq!(raise.key, "APP-2026-104712");
    assert_eq!(raise.kind, RaiseKind::Exception);
    assert_eq!(
        raise.regarding,
        Some(("application".to_owned(), "APP-2026-104712".to_owned()))
    );
    assert_eq!(raise.owner_team, "admissions");
    assert_eq!(raise.due, Some(at("2026-07-31T09:14:05Z")));
    // The raw upstream text: masking the CPR number is the worker's job.
    assert!(raise.description.contains(
        "- ADMISSION_NOT_CONFIRMED: Optagelsesstatus er ikke Bekræftet for ansøger 010203-1234"
    ));
    assert!(!raise.description.contains("Manglende obligatoriske"));
}

#[test]
fn successful_transfer_resolves_the_exception_the_defects_raised() {
    let raised = single_raise("applicant_transfer.completed_with_defects");
    assert_eq!(
        effects_of("applicant_transfer.succeeded"),
        [Effect::Resolve(Resolve {
            rule_id: raised.rule_id,
            key: raised.key,
        })]
    );
}

#[test]
fn data_share_request_raises_a_task_for_the_institution_that_must_share() {
    let raise = single_raise("guest_student.data_share_requested");
    assert_eq!(
        raise,
        Raise {
            rule_id: "guest-student-data-share".to_owned(),
            key: "DSR-2026-0042".to_owned(),
            kind: RaiseKind::Task,
            subject: "Del data om gæstestuderende GST-2026-0042 med KP".to_owned(),
            description: "\
KP har anmodet om at få delt data om gæstestuderende GST-2026-0042.

Begrundelse: Gæstestuderende på 3. semester, Socialrådgiveruddannelsen
Anmodning: DSR-2026-0042"
                .to_owned(),
            regarding: Some(("guest_student".to_owned(), "GST-2026-0042".to_owned())),
            person: None,
            owner_team: "studieadministration".to_owned(),
            due: Some(at("2026-09-07T11:30:00Z")),
            priority: Priority::Normal,
            job: "esas/guest-students".to_owned(),
        }
    );
    // The task lives at the institution in the `institution` extension (UCL); the worker
    // takes it from the event, so the rule only has to own it there.
    assert_eq!(
        example("guest_student.data_share_requested").institution,
        "UCL"
    );
}

#[test]
fn structure_date_changes_are_left_to_the_notification_service() {
    let rules = RuleSet::builtin();
    for name in [
        "education_structure.dates_changed",
        "education_structure.dates_changed.draft",
    ] {
        let message = example(name);
        assert_eq!(rules.evaluate(&message.view()), Ok(vec![]), "{name}");
        assert!(!rules.handles(&message.event_type), "{name}");
    }
}

#[test]
fn builtin_rules_handle_every_applicant_transfer_and_data_share_example() {
    let rules = RuleSet::builtin();
    for name in [
        "applicant_transfer.completed_with_defects",
        "applicant_transfer.failed",
        "applicant_transfer.succeeded",
        "guest_student.data_share_requested",
    ] {
        assert!(rules.handles(&example(name).event_type), "{name}");
    }
}

#[test]
fn evaluating_the_same_message_twice_gives_the_same_effects() {
    let rules = RuleSet::builtin();
    let message = example("applicant_transfer.completed_with_defects");
    assert_eq!(
        rules.evaluate(&message.view()),
        rules.evaluate(&message.view())
    );
}
