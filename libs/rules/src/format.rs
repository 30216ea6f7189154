//! The rules file: its format, and how it is read into validated [`Rule`]s.
//!
//! A rules file is TOML with one `[[rule]]` table per rule. Everything is checked when the
//! file is loaded; every problem is reported as `rule `<id>`: field `<field>`: <problem>`.
//! Unknown keys are refused, so a misspelt optional field cannot be silently ignored.
//!
//! ```toml
//! [[rule]]
//! id = "applicant-transfer-defects"
//! on = ["dk.esas.job.applicant_transfer.completed_with_defects",
//!       "dk.esas.job.applicant_transfer.failed"]
//! require = ["data.application_id", "data.education"]
//! kind = "exception"
//! key = "{data.application_id}"
//! subject = "Fejl ved overførsel af ansøgning {data.application_id}"
//! description = "Uddannelse: {data.education}"
//! sections = [
//!   { title = "Fejl", items = "data.errors", item = "{code}: {message}" },
//! ]
//! regarding = { type = "application", id = "{data.application_id}" }
//! owner_team = { default = "admissions", UCL = "optagelsen" }
//! due_in = "3d"
//! priority = "high"
//! job = "{data.job_run_id}"
//! resolve = [
//!   { on = "dk.esas.job.applicant_transfer.succeeded", key = "{data.application_id}" },
//! ]
//! ```
//!
//! # Fields of a rule
//!
//! | field | required | meaning |
//! |---|---|---|
//! | `id` | yes | unique id of `a-z`, `0-9` and `-`; part of every raised follow-up's identity, so do not rename a rule that has open follow-ups |
//! | `on` | yes | an event type pattern or a list of them (see below) |
//! | `when` | no | conditions on the event, all of which must hold (see below) |
//! | `require` | no | fields the event must have (present, not null, not blank) once the rule applies; a missing one dead-letters the message |
//! | `kind` | yes | `exception` or `task` |
//! | `key` | yes | template; events giving the same key raise one follow-up (per rule and institution) |
//! | `subject` | yes | template, one line |
//! | `description` | no | template, may span lines (use `"""` strings) |
//! | `sections` | no | lists appended to the description: `{ title, items, item }`, see below |
//! | `regarding` | no | `{ type = "application", id = "<template>" }`; `type` is `a-z` and `_` |
//! | `person` | no | `{ type = "applicant", id = "<template>" }`: the person the follow-up's personal data is about (`student`, `applicant` or `guest_student`), whose erasure erases it; default: the regarding, when it names a person; an id that renders empty means no one |
//! | `owner_team` | yes | a team id, or `{ default = "<team>", <INSTITUTION> = "<team>", … }` |
//! | `due_in` | no | due offset from the event's time: `5d`, `48h`, `30m`, `1d12h`; no due date when absent |
//! | `priority` | no | `low`, `normal` (default) or `high` |
//! | `job` | no | template recorded as the follow-up's source job; default `{source}` |
//! | `resolve` | no | events that complete the follow-up: `{ on, key, when? }`, see below |
//!
//! # Event type patterns
//!
//! `dk.esas.job.<job>.<outcome>` or `dk.esas.event.<entity>.<event>`. In the last two parts
//! `*` stands for any characters except a dot: `dk.esas.job.applicant_transfer.*` matches every
//! outcome of that job, `dk.esas.job.*.failed` every failed job.
//!
//! # Templates
//!
//! Text with placeholders: `{data.application_id}` (any path into `data`; a part made of
//! digits indexes a list, `{data.errors.0.code}`), `{institution}`, `{source}`, `{subject}`,
//! `{id}`, `{type}` (the CloudEvent attributes). Text and numbers are written as they are,
//! booleans as `true`/`false`. A placeholder whose field is absent, null or blank makes the
//! event fail with [`EvaluateError::MissingData`](crate::EvaluateError::MissingData), so a
//! bad message is dead-lettered instead of creating a follow-up with holes in it. Write `{{`
//! and `}}` for literal braces.
//!
//! # Sections
//!
//! `{ title = "Fejl", items = "data.errors", item = "{code}: {message}" }` appends, after a
//! blank line, the title and one `- ` line per element of the list at `items`. The `item`
//! template's placeholders are relative to the element (`{code}` is the element's `code`);
//! a field an element lacks renders as nothing. A section whose list is absent, null or empty
//! is left out; a value that is not a list is
//! [`EvaluateError::WrongType`](crate::EvaluateError::WrongType). `title` is a template over
//! the event.
//!
//! # Conditions
//!
//! Each condition names a `field` (as in templates) and exactly one test:
//! `equals = <value>`, `not_equals = <value>` (also true when the field is absent),
//! `one_of = [<value>, …]`, `exists = true|false` (null counts as absent),
//! `not_empty = true|false` (blank text and empty lists count as empty). Values are text,
//! numbers or booleans.
//!
//! # Resolving
//!
//! `resolve = [{ on = "<pattern or list>", key = "<template>", when = [<conditions>] }]`: an
//! event matching an entry completes the follow-up this rule raised under the rendered key.
//! The key must render to the same text as the rule's own `key` did for the raising event.
//! When an event matches both a resolve entry and `on`, resolving wins: the rule does not
//! also raise from it.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::condition::{Condition, Test};
use crate::duration::parse_due_in;
use crate::effect::{Priority, RaiseKind};
use crate::error::RuleError;
use crate::pattern::TypePattern;
use crate::rule::{OwnerTeams, Regarding, ResolveOn, Rule, Section};
use crate::template::{FieldPath, Scope, Template};

/// The fields a `[[rule]]` table may have, in the order the reference lists them.
const RULE_FIELDS: &[&str] = &[
    "id",
    "on",
    "when",
    "require",
    "kind",
    "key",
    "subject",
    "description",
    "sections",
    "regarding",
    "person",
    "owner_team",
    "due_in",
    "priority",
    "job",
    "resolve",
];

/// The `job` template when a rule gives none: the event's source.
const DEFAULT_JOB: &str = "{source}";

/// A condition as written; [`RuleFields::conditions`] checks it has exactly one test.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    /// The field to test.
    field: String,
    /// See [`Test::Equals`].
    equals: Option<toml::Value>,
    /// See [`Test::NotEquals`].
    not_equals: Option<toml::Value>,
    /// See [`Test::OneOf`].
    one_of: Option<Vec<toml::Value>>,
    /// See [`Test::Exists`].
    exists: Option<bool>,
    /// See [`Test::NotEmpty`].
    not_empty: Option<bool>,
}

/// A section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    /// The heading template.
    title: String,
    /// The path to the list.
    items: String,
    /// The per-element template.
    item: String,
}

/// `regarding` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegarding {
    /// The fixed regarding type.
    #[serde(rename = "type")]
    kind: String,
    /// The id template.
    id: String,
}

/// A `resolve` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResolve {
    /// A pattern or a list of patterns.
    on: toml::Value,
    /// The key template.
    key: String,
    /// Conditions, checked one by one so errors can name their index.
    #[serde(default)]
    when: Vec<toml::Value>,
}

/// Reads a whole rules file.
pub(crate) fn parse_rules(text: &str) -> Result<Vec<Rule>, RuleError> {
    let mut file: toml::Table = toml::from_str(text).map_err(|error| RuleError::Toml {
        message: error.to_string().trim_end().to_owned(),
    })?;
    if let Some(key) = file.keys().find(|key| key.as_str() != "rule") {
        return Err(RuleError::File {
            problem: format!("unknown top-level key `{key}` (write each rule as a [[rule]] table)"),
        });
    }
    let not_rule_tables = || RuleError::File {
        problem: "`rule` must be a list of [[rule]] tables".to_owned(),
    };
    let entries = match file.remove("rule") {
        None => Vec::new(),
        Some(toml::Value::Array(entries)) => entries,
        Some(_) => return Err(not_rule_tables()),
    };

    let mut rules: Vec<Rule> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let toml::Value::Table(table) = entry else {
            return Err(not_rule_tables());
        };
        let rule = parse_rule(index + 1, table)?;
        if let Some(first) = rules.iter().position(|r| r.id == rule.id) {
            return Err(RuleError::field(
                &rule.id,
                "id",
                format!(
                    "rules #{} and #{} have the same id (ids must be unique)",
                    first + 1,
                    index + 1
                ),
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// Reads and checks one `[[rule]]` table; `number` counts rules from 1.
fn parse_rule(number: usize, table: toml::Table) -> Result<Rule, RuleError> {
    let label = match table.get("id") {
        Some(toml::Value::String(id)) if is_rule_id(id) => id.clone(),
        _ => format!("#{number}"),
    };
    let mut fields = RuleFields { rule: label, table };
    fields.refuse_unknown()?;

    let id: String = fields.required("id")?;
    if !is_rule_id(&id) {
        return Err(fields.error(
            "id",
            format!("{id:?} is not a rule id (use a-z, 0-9 and -)"),
        ));
    }
    let on = fields.required("on")?;
    let on = fields.patterns("on", on)?;
    let when = fields.optional::<Vec<toml::Value>>("when")?;
    let when = fields.conditions("when", when.unwrap_or_default())?;
    let require = fields
        .optional::<Vec<String>>("require")?
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, path)| fields.path(&format!("require[{i}]"), path))
        .collect::<Result<_, _>>()?;
    let kind = fields.kind()?;
    let key = fields.required_template("key")?;
    let subject = fields.required_template("subject")?;
    let description = fields
        .optional::<String>("description")?
        .unwrap_or_default();
    let description = fields.template("description", &description, Scope::Event)?;
    let sections = fields.sections()?;
    let regarding = fields.regarding()?;
    let person = fields.person()?;
    let owner_team = fields.owner_team()?;
    let due_in = match fields.optional::<String>("due_in")? {
        Some(text) => Some(parse_due_in(&text).map_err(|problem| fields.error("due_in", problem))?),
        None => None,
    };
    let priority = fields.priority()?;
    let job = fields.optional::<String>("job")?;
    let job = fields.template("job", job.as_deref().unwrap_or(DEFAULT_JOB), Scope::Event)?;
    let resolve = fields.resolve()?;

    Ok(Rule {
        id,
        on,
        when,
        require,
        kind,
        key,
        subject,
        description,
        sections,
        regarding,
        person,
        owner_team,
        due_in,
        priority,
        job,
        resolve,
    })
}

/// True for a non-empty id of `a-z`, `0-9` and `-`.
fn is_rule_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// One rule's table while it is being read: takes fields out one by one and names the rule
/// and the field in every error.
struct RuleFields {
    /// The rule's id, or `#n` until a valid id is known.
    rule: String,
    /// The fields not taken yet.
    table: toml::Table,
}

impl RuleFields {
    /// A [`RuleError::Field`] for this rule.
    fn error(&self, field: &str, problem: impl Into<String>) -> RuleError {
        RuleError::field(&self.rule, field, problem)
    }

    /// Refuses keys that are not rule fields (checked first, so a misspelt required field is
    /// reported as unknown rather than as missing).
    fn refuse_unknown(&self) -> Result<(), RuleError> {
        match self
            .table
            .keys()
            .find(|key| !RULE_FIELDS.contains(&key.as_str()))
        {
            Some(key) => Err(self.error(
                key,
                format!("unknown field (known fields: {})", RULE_FIELDS.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// Converts a TOML value with serde, naming `field` if it does not fit.
    fn decode<T: DeserializeOwned>(&self, field: &str, value: toml::Value) -> Result<T, RuleError> {
        T::deserialize(value).map_err(|error| {
            let problem = error.to_string().trim().replace('\n', "; ");
            self.error(field, problem)
        })
    }

    /// Takes an optional field.
    fn optional<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, RuleError> {
        match self.table.remove(name) {
            Some(value) => self.decode(name, value).map(Some),
            None => Ok(None),
        }
    }

    /// Takes a required field.
    fn required<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, RuleError> {
        self.optional(name)?
            .ok_or_else(|| self.error(name, "missing (this field is required)"))
    }

    /// Parses a template, naming `field` if it is malformed.
    fn template(&self, field: &str, text: &str, scope: Scope) -> Result<Template, RuleError> {
        Template::parse(text, scope).map_err(|problem| self.error(field, problem))
    }

    /// Takes a required template that must produce some text.
    fn required_template(&mut self, name: &str) -> Result<Template, RuleError> {
        let text: String = self.required(name)?;
        if text.trim().is_empty() {
            return Err(self.error(name, "must not be empty"));
        }
        self.template(name, &text, Scope::Event)
    }

    /// Parses an event field path.
    fn path(&self, field: &str, text: &str) -> Result<FieldPath, RuleError> {
        FieldPath::parse(text, Scope::Event).map_err(|problem| self.error(field, problem))
    }

    /// Parses `on`: one pattern or a non-empty list of them.
    fn patterns(&self, field: &str, value: toml::Value) -> Result<Vec<TypePattern>, RuleError> {
        let texts: Vec<String> = match value {
            toml::Value::String(text) => vec![text],
            toml::Value::Array(_) => self.decode(field, value)?,
            _ => return Err(self.error(field, "must be an event type pattern or a list of them")),
        };
        if texts.is_empty() {
            return Err(self.error(field, "needs at least one event type pattern"));
        }
        texts
            .iter()
            .map(|text| TypePattern::parse(text).map_err(|problem| self.error(field, problem)))
            .collect()
    }

    /// Parses a list of conditions; `field` is `when` or `resolve[i].when`.
    fn conditions(
        &self,
        field: &str,
        values: Vec<toml::Value>,
    ) -> Result<Vec<Condition>, RuleError> {
        values
            .into_iter()
            .enumerate()
            .map(|(i, value)| self.condition(&format!("{field}[{i}]"), value))
            .collect()
    }

    /// Parses one condition.
    fn condition(&self, field: &str, value: toml::Value) -> Result<Condition, RuleError> {
        let raw: RawCondition = self.decode(field, value)?;
        let path = self.path(&format!("{field}.field"), &raw.field)?;
        let json = |name: &str, value: toml::Value| {
            json_value(value).map_err(|problem| self.error(&format!("{field}.{name}"), problem))
        };
        let mut tests = Vec::new();
        if let Some(value) = raw.equals {
            tests.push(Test::Equals(json("equals", value)?));
        }
        if let Some(value) = raw.not_equals {
            tests.push(Test::NotEquals(json("not_equals", value)?));
        }
        if let Some(values) = raw.one_of {
            if values.is_empty() {
                return Err(self.error(&format!("{field}.one_of"), "needs at least one value"));
            }
            let values = values
                .into_iter()
                .map(|value| json("one_of", value))
                .collect::<Result<_, _>>()?;
            tests.push(Test::OneOf(values));
        }
        if let Some(wanted) = raw.exists {
            tests.push(Test::Exists(wanted));
        }
        if let Some(wanted) = raw.not_empty {
            tests.push(Test::NotEmpty(wanted));
        }
        let mut tests = tests.into_iter();
        match (tests.next(), tests.next()) {
            (Some(test), None) => Ok(Condition { field: path, test }),
            (None, _) => Err(self.error(
                field,
                "needs one test: equals, not_equals, one_of, exists or not_empty",
            )),
            (Some(_), Some(_)) => Err(self.error(
                field,
                "has more than one test (write one condition per test)",
            )),
        }
    }

    /// Takes `kind`.
    fn kind(&mut self) -> Result<RaiseKind, RuleError> {
        let kind: String = self.required("kind")?;
        match kind.as_str() {
            "exception" => Ok(RaiseKind::Exception),
            "task" => Ok(RaiseKind::Task),
            "notification" => Err(self.error(
                "kind",
                "rules raise exceptions and tasks; notifications come from subscriptions",
            )),
            other => Err(self.error(
                "kind",
                format!("{other:?} is not a kind (use exception or task)"),
            )),
        }
    }

    /// Takes `priority` (default normal).
    fn priority(&mut self) -> Result<Priority, RuleError> {
        match self.optional::<String>("priority")?.as_deref() {
            None | Some("normal") => Ok(Priority::Normal),
            Some("low") => Ok(Priority::Low),
            Some("high") => Ok(Priority::High),
            Some(other) => Err(self.error(
                "priority",
                format!("{other:?} is not a priority (use low, normal or high)"),
            )),
        }
    }

    /// Takes `sections`.
    fn sections(&mut self) -> Result<Vec<Section>, RuleError> {
        let values = self
            .optional::<Vec<toml::Value>>("sections")?
            .unwrap_or_default();
        let mut sections = Vec::with_capacity(values.len());
        for (i, value) in values.into_iter().enumerate() {
            let field = format!("sections[{i}]");
            let raw: RawSection = self.decode(&field, value)?;
            let items = self.path(&format!("{field}.items"), &raw.items)?;
            if items.root() != "data" {
                return Err(self.error(
                    &format!("{field}.items"),
                    format!(
                        "`{}` is not in data (lists are in the event's data, e.g. data.errors)",
                        raw.items
                    ),
                ));
            }
            sections.push(Section {
                title: self.template(&format!("{field}.title"), &raw.title, Scope::Event)?,
                items,
                item: self.template(&format!("{field}.item"), &raw.item, Scope::Item)?,
            });
        }
        Ok(sections)
    }

    /// Takes `regarding`.
    fn regarding(&mut self) -> Result<Option<Regarding>, RuleError> {
        let Some(value) = self.optional::<toml::Value>("regarding")? else {
            return Ok(None);
        };
        let raw: RawRegarding = self.decode("regarding", value)?;
        let type_ok = (1..=40).contains(&raw.kind.len())
            && raw.kind.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if !type_ok {
            return Err(self.error(
                "regarding.type",
                format!(
                    "{:?} is not a regarding type (1 to 40 of a-z and _, e.g. application)",
                    raw.kind
                ),
            ));
        }
        if raw.id.trim().is_empty() {
            return Err(self.error("regarding.id", "must not be empty"));
        }
        Ok(Some(Regarding {
            kind: raw.kind,
            id: self.template("regarding.id", &raw.id, Scope::Event)?,
        }))
    }

    /// Takes `person`.
    fn person(&mut self) -> Result<Option<Regarding>, RuleError> {
        let Some(value) = self.optional::<toml::Value>("person")? else {
            return Ok(None);
        };
        let raw: RawRegarding = self.decode("person", value)?;
        if !["student", "applicant", "guest_student"].contains(&raw.kind.as_str()) {
            return Err(self.error(
                "person.type",
                format!(
                    "{:?} is not a kind of person: student, applicant or guest_student",
                    raw.kind
                ),
            ));
        }
        if raw.id.trim().is_empty() {
            return Err(self.error("person.id", "must not be empty"));
        }
        Ok(Some(Regarding {
            kind: raw.kind,
            id: self.template("person.id", &raw.id, Scope::Event)?,
        }))
    }

    /// Takes `owner_team`: a team id, or a table with `default` and per-institution teams.
    fn owner_team(&mut self) -> Result<OwnerTeams, RuleError> {
        let table = match self.required::<toml::Value>("owner_team")? {
            toml::Value::String(team) => toml::Table::from_iter([("default".to_owned(), toml::Value::String(team))]),
            toml::Value::Table(table) => table,
            _ => {
                return Err(self.error(
                    "owner_team",
                    "must be a team id or a table like { default = \"admissions\", UCL = \"optagelsen\" }",
                ))
            }
        };
        let mut default = None;
        let mut by_institution = std::collections::BTreeMap::new();
        for (institution, team) in table {
            let field = if institution == "default" {
                "owner_team".to_owned()
            } else {
                format!("owner_team.{institution}")
            };
            let team: String = self.decode(&field, team)?;
            if !is_team_id(&team) {
                return Err(self.error(
                    &field,
                    format!("{team:?} is not a team id (1 to 64 characters, no spaces or ':')"),
                ));
            }
            if institution == "default" {
                default = Some(team);
            } else if is_institution_id(&institution) {
                by_institution.insert(institution, team);
            } else {
                return Err(self.error(
                    &field,
                    format!(
                        "{institution:?} is not an institution id (1 to 32 of A-Z, a-z, 0-9, _ and -)"
                    ),
                ));
            }
        }
        let default = default.ok_or_else(|| {
            self.error(
                "owner_team",
                "needs a `default` team for institutions without their own",
            )
        })?;
        Ok(OwnerTeams {
            default,
            by_institution,
        })
    }

    /// Takes `resolve`.
    fn resolve(&mut self) -> Result<Vec<ResolveOn>, RuleError> {
        let values = self
            .optional::<Vec<toml::Value>>("resolve")?
            .unwrap_or_default();
        let mut entries = Vec::with_capacity(values.len());
        for (i, value) in values.into_iter().enumerate() {
            let field = format!("resolve[{i}]");
            let raw: RawResolve = self.decode(&field, value)?;
            if raw.key.trim().is_empty() {
                return Err(self.error(&format!("{field}.key"), "must not be empty"));
            }
            entries.push(ResolveOn {
                on: self.patterns(&format!("{field}.on"), raw.on)?,
                when: self.conditions(&format!("{field}.when"), raw.when)?,
                key: self.template(&format!("{field}.key"), &raw.key, Scope::Event)?,
            });
        }
        Ok(entries)
    }
}

/// A condition's value as JSON, to compare with the event's data.
fn json_value(value: toml::Value) -> Result<Value, String> {
    match value {
        toml::Value::String(text) => Ok(Value::String(text)),
        toml::Value::Integer(number) => Ok(Value::from(number)),
        toml::Value::Float(number) => serde_json::Number::from_f64(number)
            .map(Value::Number)
            .ok_or_else(|| format!("{number} is not a number JSON can hold")),
        toml::Value::Boolean(flag) => Ok(Value::Bool(flag)),
        other => Err(format!("{other} is not text, a number or a boolean")),
    }
}

/// Same rule as the domain's team ids: 1 to 64 characters, no whitespace, control
/// characters or ':'.
fn is_team_id(team: &str) -> bool {
    (1..=64).contains(&team.chars().count())
        && !team
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':')
}

/// Same rule as the domain's institution ids: 1 to 32 of `A-Z`, `a-z`, `0-9`, `_` and `-`.
fn is_institution_id(institution: &str) -> bool {
    (1..=32).contains(&institution.len())
        && institution
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
