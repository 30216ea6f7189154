//! Loading rules: every mistake in a rules file is refused at start-up, with a message that
//! names the rule and the field.

mod common;

use followup_rules::{RuleError, RuleSet, DEFAULT_RULES_TOML};

/// A minimal valid rule, one `field = value` line per entry.
const BASE: &[(&str, &str)] = &[
    ("id", r#""r""#),
    ("on", r#""dk.esas.job.x.failed""#),
    ("kind", r#""exception""#),
    ("key", r#""{data.id}""#),
    ("subject", r#""Fejl i {data.id}""#),
    ("owner_team", r#""team""#),
];

/// The base rule with `changes` applied: `(field, Some(value))` sets or adds a line,
/// `(field, None)` removes it.
fn rule_with(changes: &[(&str, Option<&str>)]) -> String {
    let mut lines: Vec<(String, String)> = BASE
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for (field, value) in changes {
        lines.retain(|(k, _)| k != field);
        if let Some(value) = value {
            lines.push(((*field).to_owned(), (*value).to_owned()));
        }
    }
    let body: Vec<String> = lines.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("[[rule]]\n{}\n", body.join("\n"))
}

/// Changes to the base rule: `(field, Some(value))` sets or adds a line, `(field, None)`
/// removes it.
type Changes = &'static [(&'static str, Option<&'static str>)];

/// A broken rule: (what is wrong, changes, rule named, field named, fragment of the problem).
type Case = (
    &'static str,
    Changes,
    &'static str,
    &'static str,
    &'static str,
);

/// Asserts that `text` is refused as a problem of `rule`'s `field`, mentioning `fragment`;
/// `what` says which case failed.
#[track_caller]
fn assert_refused(what: &str, text: &str, rule: &str, field: &str, fragment: &str) {
    let Err(error) = RuleSet::from_toml(text) else {
        panic!("{what}: accepted:\n{text}");
    };
    let message = error.to_string();
    let RuleError::Field {
        rule: actual_rule,
        field: actual_field,
        ..
    } = &error
    else {
        panic!("{what}: expected a field error, got {message}");
    };
    assert_eq!(
        (actual_rule.as_str(), actual_field.as_str()),
        (rule, field),
        "{what}: {message}\n--- in ---\n{text}"
    );
    assert!(
        message.starts_with(&format!("rule `{rule}`: field `{field}`: ")),
        "{what}: {message}"
    );
    assert!(
        message.contains(fragment),
        "{what}: {message:?} lacks {fragment:?}"
    );
}

#[test]
fn the_base_rule_of_these_tests_is_valid() {
    let rules = RuleSet::from_toml(&rule_with(&[])).unwrap();
    assert_eq!(rules.rules()[0].id, "r");
}

#[test]
fn the_embedded_default_rules_are_valid_and_the_same_as_the_file() {
    let embedded = RuleSet::from_toml(DEFAULT_RULES_TOML).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("default-rules.toml");
    let loaded = RuleSet::load(&path).unwrap();
    let ids =
        |rules: &RuleSet| -> Vec<String> { rules.rules().iter().map(|r| r.id.clone()).collect() };
    assert_eq!(ids(&embedded), ids(&loaded));
    assert_eq!(ids(&embedded), ids(&RuleSet::builtin()));
}

/// Every way a rule can be wrong that the loader must catch.
#[rustfmt::skip]
const CASES: &[Case] = &[
    ("missing id", &[("id", None)], "#1", "id", "missing"),
    ("id with capitals", &[("id", Some(r#""Bad_Id""#))], "#1", "id", "not a rule id"),
    ("empty id", &[("id", Some(r#""""#))], "#1", "id", "not a rule id"),
    ("unknown field", &[("due-in", Some(r#""3d""#))], "r", "due-in", "unknown field"),
    ("misspelt required field", &[("kind", None), ("kinds", Some(r#""task""#))], "r", "kinds", "unknown field"),
    ("missing on", &[("on", None)], "r", "on", "missing"),
    ("empty on list", &[("on", Some("[]"))], "r", "on", "at least one"),
    ("on outside the scheme", &[("on", Some(r#""esas.jobs.x.failed""#))], "r", "on", "not an event type pattern"),
    ("on in a list outside the scheme", &[("on", Some(r#"["dk.esas.job.x.failed", "dk.esas.jobs.x.y"]"#))], "r", "on", "dk.esas.jobs.x.y"),
    ("on of the wrong type", &[("on", Some("5"))], "r", "on", "pattern or a list"),
    ("missing kind", &[("kind", None)], "r", "kind", "missing"),
    ("notification kind", &[("kind", Some(r#""notification""#))], "r", "kind", "subscriptions"),
    ("unknown kind", &[("kind", Some(r#""bug""#))], "r", "kind", "not a kind"),
    ("empty key", &[("key", Some(r#""  ""#))], "r", "key", "must not be empty"),
    ("missing subject", &[("subject", None)], "r", "subject", "missing"),
    ("unclosed placeholder", &[("subject", Some(r#""Fejl {data.id""#))], "r", "subject", "not closed"),
    ("stray closing brace", &[("subject", Some(r#""Fejl data.id}""#))], "r", "subject", "without a `{`"),
    ("unknown placeholder root", &[("subject", Some(r#""{dato.id}""#))], "r", "subject", "not a field of the event"),
    ("bad description", &[("description", Some(r#""{}""#))], "r", "description", "empty placeholder"),
    ("bad job", &[("job", Some(r#""{run}""#))], "r", "job", "not a field of the event"),
    ("bad duration", &[("due_in", Some(r#""5x""#))], "r", "due_in", "\"5x\" is not a duration (use e.g. 5d, 48h, 30m)"),
    ("duration as number", &[("due_in", Some("3"))], "r", "due_in", "invalid type"),
    ("unknown priority", &[("priority", Some(r#""urgent""#))], "r", "priority", "not a priority"),
    ("owner team without default", &[("owner_team", Some(r#"{ UCL = "optagelsen" }"#))], "r", "owner_team", "default"),
    ("owner team with a space", &[("owner_team", Some(r#"{ default = "a b" }"#))], "r", "owner_team", "not a team id"),
    ("owner team override of the wrong type", &[("owner_team", Some(r#"{ default = "a", UCL = 5 }"#))], "r", "owner_team.UCL", "invalid type"),
    ("owner team for a bad institution id", &[("owner_team", Some(r#"{ default = "a", "K P" = "b" }"#))], "r", "owner_team.K P", "not an institution id"),
    ("owner team of the wrong type", &[("owner_team", Some("[]"))], "r", "owner_team", "team id or a table"),
    ("missing owner team", &[("owner_team", None)], "r", "owner_team", "missing"),
    ("bad regarding type", &[("regarding", Some(r#"{ type = "Application", id = "{data.id}" }"#))], "r", "regarding.type", "not a regarding type"),
    ("unknown regarding field", &[("regarding", Some(r#"{ kind = "application", id = "{data.id}" }"#))], "r", "regarding", "unknown field `kind`"),
    ("bad regarding id", &[("regarding", Some(r#"{ type = "application", id = "{data.id" }"#))], "r", "regarding.id", "not closed"),
    ("condition without a test", &[("when", Some(r#"[{ field = "data.x" }]"#))], "r", "when[0]", "needs one test"),
    ("condition with two tests", &[("when", Some(r#"[{ field = "data.x", exists = true, equals = 1 }]"#))], "r", "when[0]", "more than one test"),
    ("condition on an unknown field", &[("when", Some(r#"[{ field = "dato.x", exists = true }]"#))], "r", "when[0].field", "not a field of the event"),
    ("condition comparing with a list", &[("when", Some(r#"[{ field = "data.x", equals = [1] }]"#))], "r", "when[0].equals", "not text, a number or a boolean"),
    ("condition with an empty one_of", &[("when", Some(r#"[{ field = "data.x", one_of = [] }]"#))], "r", "when[0].one_of", "at least one"),
    ("condition with an unknown test", &[("when", Some(r#"[{ field = "data.x", exists = true }, { field = "data.y", greater_than = 1 }]"#))], "r", "when[1]", "unknown field `greater_than`"),
    ("bad required path", &[("require", Some(r#"["data.id", "data"]"#))], "r", "require[1]", "not a field of the event"),
    ("section list outside data", &[("sections", Some(r#"[{ title = "T", items = "institution", item = "{x}" }]"#))], "r", "sections[0].items", "not in data"),
    ("bad section item", &[("sections", Some(r#"[{ title = "T", items = "data.l", item = "{x" }]"#))], "r", "sections[0].item", "not closed"),
    ("bad section title", &[("sections", Some(r#"[{ title = "{x}", items = "data.l", item = "{x}" }]"#))], "r", "sections[0].title", "not a field of the event"),
    ("unknown section field", &[("sections", Some(r#"[{ title = "T", items = "data.l", itemz = "{x}" }]"#))], "r", "sections[0]", "unknown field `itemz`"),
    ("empty resolve key", &[("resolve", Some(r#"[{ on = "dk.esas.job.x.succeeded", key = "" }]"#))], "r", "resolve[0].key", "must not be empty"),
    ("bad resolve pattern", &[("resolve", Some(r#"[{ on = "nope", key = "{data.id}" }]"#))], "r", "resolve[0].on", "not an event type pattern"),
    ("bad resolve key", &[("resolve", Some(r#"[{ on = "dk.esas.job.x.succeeded", key = "{id" }]"#))], "r", "resolve[0].key", "not closed"),
    ("bad resolve condition", &[("resolve", Some(r#"[{ on = "dk.esas.job.x.succeeded", key = "{data.id}", when = [{ field = "data.y" }] }]"#))], "r", "resolve[0].when[0]", "needs one test"),
    ("resolve without key", &[("resolve", Some(r#"[{ on = "dk.esas.job.x.succeeded" }]"#))], "r", "resolve[0]", "missing field `key`"),
];

#[test]
fn every_mistake_in_a_rule_names_the_rule_and_the_field() {
    for (what, changes, rule, field, fragment) in CASES {
        assert_refused(what, &rule_with(changes), rule, field, fragment);
    }
}

#[test]
fn two_rules_with_the_same_id_are_refused() {
    let text = format!("{}{}", rule_with(&[]), rule_with(&[]));
    assert_refused(
        "duplicate ids",
        &text,
        "r",
        "id",
        "rules #1 and #2 have the same id",
    );
}

#[test]
fn a_rule_without_a_usable_id_is_named_by_its_position() {
    let text = format!(
        "{}{}",
        rule_with(&[]),
        rule_with(&[("id", None), ("kind", Some(r#""bug""#))])
    );
    assert_refused("second rule without id", &text, "#2", "id", "missing");
}

#[test]
fn text_that_is_not_toml_is_refused_with_its_line() {
    let error = RuleSet::from_toml("[[rule]]\nid = \n").unwrap_err();
    assert!(matches!(error, RuleError::Toml { .. }), "{error}");
    assert!(error.to_string().contains("line 2"), "{error}");
}

#[test]
fn top_level_keys_other_than_rule_are_refused() {
    let error = RuleSet::from_toml(&rule_with(&[]).replace("[[rule]]", "[[rules]]")).unwrap_err();
    assert!(matches!(error, RuleError::File { .. }), "{error}");
    assert!(error.to_string().contains("`rules`"), "{error}");

    let error = RuleSet::from_toml("rule = 1").unwrap_err();
    assert!(matches!(error, RuleError::File { .. }), "{error}");
}

#[test]
fn an_empty_rules_file_is_a_valid_file_without_rules() {
    let rules = RuleSet::from_toml("# no rules yet\n").unwrap();
    assert!(rules.rules().is_empty());
    assert!(!rules.handles("dk.esas.job.applicant_transfer.failed"));
}

#[test]
fn loading_a_broken_file_names_the_file_the_rule_and_the_field() {
    let path = common::fixtures().join("broken-rules.toml");
    let error = RuleSet::load(&path).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "rules file {}: rule `applicant-transfer-defects`: field `due_in`: \"5x\" is not a \
             duration (use e.g. 5d, 48h, 30m)",
            path.display()
        )
    );
}

#[test]
fn loading_a_missing_file_names_the_file() {
    let path = common::fixtures().join("no-such-rules.toml");
    let error = RuleSet::load(&path).unwrap_err();
    assert!(matches!(error, RuleError::Read { .. }), "{error}");
    assert!(error.to_string().contains("no-such-rules.toml"), "{error}");
}

#[test]
fn optional_fields_have_sensible_defaults() {
    let rules = RuleSet::from_toml(&rule_with(&[])).unwrap();
    let rule = &rules.rules()[0];
    assert_eq!(rule.priority(), followup_rules::Priority::Normal);
    assert_eq!(rule.due_in(), None);
    assert_eq!(rule.on().collect::<Vec<_>>(), ["dk.esas.job.x.failed"]);
    assert_eq!(rule.resolved_by().count(), 0);
}
