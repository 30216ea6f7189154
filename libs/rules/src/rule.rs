//! A validated rule, and what it makes of one event.
//!
//! For each event a rule first looks at its `resolve` entries: if one matches, the rule
//! resolves its follow-up and does not raise from this event (so `on = "….applicant_transfer.*"`
//! with a resolve entry for `.succeeded` does the obvious thing). Otherwise, if the event's
//! type matches `on` and every `when` condition holds, the rule checks `require` and renders
//! its templates into a [`Raise`].

use std::collections::BTreeMap;

use chrono::TimeDelta;
use serde_json::Value;

use crate::condition::Condition;
use crate::effect::{Effect, Priority, Raise, RaiseKind, Resolve};
use crate::error::EvaluateError;
use crate::event::{text_of, walk, EventView};
use crate::pattern::TypePattern;
use crate::template::{FieldPath, Template};

/// One rule from a rules file, validated. Built only by [`crate::RuleSet`].
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's id: unique in its file, part of every follow-up identity it raises, and
    /// recorded as the follow-up's source.
    pub id: String,
    /// The event types (`on`) that raise a follow-up.
    pub(crate) on: Vec<TypePattern>,
    /// Conditions (`when`) that must all hold for the rule to raise.
    pub(crate) when: Vec<Condition>,
    /// Fields (`require`) an event must have once the rule applies; else the message is
    /// dead-lettered.
    pub(crate) require: Vec<FieldPath>,
    /// Exception or task.
    pub(crate) kind: RaiseKind,
    /// The key template: repeats with the same key are one follow-up.
    pub(crate) key: Template,
    /// The subject template.
    pub(crate) subject: Template,
    /// The description template (may be empty when sections say it all).
    pub(crate) description: Template,
    /// List sections appended to the description.
    pub(crate) sections: Vec<Section>,
    /// What the follow-up is about, if anything.
    pub(crate) regarding: Option<Regarding>,
    /// The person its personal data is about (same shape as a regarding), if the rule says.
    pub(crate) person: Option<Regarding>,
    /// The owning team, per institution.
    pub(crate) owner_team: OwnerTeams,
    /// How long after the event the follow-up is due; none means no due date.
    pub(crate) due_in: Option<TimeDelta>,
    /// The follow-up's priority.
    pub(crate) priority: Priority,
    /// The job template (default `{source}`), recorded as the follow-up's source job.
    pub(crate) job: Template,
    /// Events that resolve what this rule raised.
    pub(crate) resolve: Vec<ResolveOn>,
}

/// A list in the event rendered as lines under a title, e.g. the missing SUEs.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    /// The heading line (a template over the event).
    pub(crate) title: Template,
    /// Where the list is (`data.…`).
    pub(crate) items: FieldPath,
    /// One line per element; its placeholders are relative to the element, and a missing
    /// one renders as nothing (one odd element should not lose the follow-up).
    pub(crate) item: Template,
}

/// The `regarding` of raised follow-ups.
#[derive(Debug, Clone)]
pub(crate) struct Regarding {
    /// A fixed type, e.g. `application`.
    pub(crate) kind: String,
    /// The id template, e.g. `{data.application_id}`.
    pub(crate) id: Template,
}

/// The owning team: a default, and overrides for institutions that name their teams
/// differently.
#[derive(Debug, Clone)]
pub(crate) struct OwnerTeams {
    /// The team for every institution without an override.
    pub(crate) default: String,
    /// Institution id → team id.
    pub(crate) by_institution: BTreeMap<String, String>,
}

impl OwnerTeams {
    /// The team that owns follow-ups at `institution`.
    pub(crate) fn for_institution(&self, institution: &str) -> &str {
        self.by_institution
            .get(institution)
            .unwrap_or(&self.default)
    }
}

/// A `resolve` entry: an event that completes what the rule raised.
#[derive(Debug, Clone)]
pub(crate) struct ResolveOn {
    /// The event types that resolve.
    pub(crate) on: Vec<TypePattern>,
    /// Conditions that must all hold.
    pub(crate) when: Vec<Condition>,
    /// The key template; must render the same key as the rule's own key did.
    pub(crate) key: Template,
}

impl ResolveOn {
    /// True when this entry resolves on `event`.
    fn applies_to(&self, event: &EventView<'_>) -> bool {
        self.on.iter().any(|p| p.matches(event.event_type))
            && self.when.iter().all(|c| c.holds(event))
    }
}

impl Rule {
    /// Exception or task.
    pub fn kind(&self) -> RaiseKind {
        self.kind
    }

    /// The priority of raised follow-ups.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// How long after the event raised follow-ups are due, if the rule sets it.
    pub fn due_in(&self) -> Option<TimeDelta> {
        self.due_in
    }

    /// The event type patterns that raise, as written in the file.
    pub fn on(&self) -> impl Iterator<Item = &str> {
        self.on.iter().map(TypePattern::as_str)
    }

    /// The event type patterns that resolve, as written in the file.
    pub fn resolved_by(&self) -> impl Iterator<Item = &str> {
        self.resolve
            .iter()
            .flat_map(|entry| entry.on.iter().map(TypePattern::as_str))
    }

    /// True when the rule raises or resolves on this event type (ignoring conditions).
    pub fn handles(&self, event_type: &str) -> bool {
        self.on.iter().any(|p| p.matches(event_type))
            || self
                .resolve
                .iter()
                .any(|entry| entry.on.iter().any(|p| p.matches(event_type)))
    }

    /// Appends what this rule makes of `event` to `effects` (nothing, resolves, or one raise).
    pub(crate) fn evaluate(
        &self,
        event: &EventView<'_>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), EvaluateError> {
        let reader = Reader {
            rule_id: &self.id,
            event,
        };

        let mut resolved = false;
        for entry in self.resolve.iter().filter(|e| e.applies_to(event)) {
            let resolve = Effect::Resolve(Resolve {
                rule_id: self.id.clone(),
                key: reader.render(&entry.key)?,
            });
            if !effects.contains(&resolve) {
                effects.push(resolve);
            }
            resolved = true;
        }
        if resolved {
            return Ok(());
        }

        let applies = self.on.iter().any(|p| p.matches(event.event_type))
            && self.when.iter().all(|c| c.holds(event));
        if !applies {
            return Ok(());
        }
        for path in &self.require {
            reader.require(path)?;
        }
        effects.push(Effect::Raise(self.raise(&reader)?));
        Ok(())
    }

    /// Renders the follow-up to raise.
    fn raise(&self, reader: &Reader<'_, '_>) -> Result<Raise, EvaluateError> {
        let event = reader.event;
        let regarding = match &self.regarding {
            Some(regarding) => Some((regarding.kind.clone(), reader.render(&regarding.id)?)),
            None => None,
        };
        let person = match &self.person {
            Some(person) => Some((person.kind.clone(), reader.render(&person.id)?))
                .filter(|(_, id)| !id.trim().is_empty()),
            None => None,
        };
        Ok(Raise {
            rule_id: self.id.clone(),
            key: reader.render(&self.key)?,
            kind: self.kind,
            subject: reader.render(&self.subject)?,
            description: self.description(reader)?,
            regarding,
            person,
            owner_team: self
                .owner_team
                .for_institution(event.institution)
                .to_owned(),
            // `None` only for a time near the end of chrono's range: no due date then.
            due: self.due_in.and_then(|d| event.time.checked_add_signed(d)),
            priority: self.priority,
            job: reader.render(&self.job)?,
        })
    }

    /// The description text followed by every non-empty section, separated by blank lines.
    fn description(&self, reader: &Reader<'_, '_>) -> Result<String, EvaluateError> {
        let mut blocks = Vec::new();
        let text = reader.render(&self.description)?;
        if !text.trim().is_empty() {
            blocks.push(text.trim_end().to_owned());
        }
        for section in &self.sections {
            if let Some(block) = reader.section(section)? {
                blocks.push(block);
            }
        }
        Ok(blocks.join("\n\n"))
    }
}

/// Reads an event on behalf of one rule, turning gaps into [`EvaluateError`]s that name it.
struct Reader<'r, 'e> {
    /// The rule reading, for error messages.
    rule_id: &'r str,
    /// The event read.
    event: &'r EventView<'e>,
}

impl Reader<'_, '_> {
    /// [`EvaluateError::MissingData`] for `field`.
    fn missing(&self, field: String) -> EvaluateError {
        EvaluateError::MissingData {
            rule_id: self.rule_id.to_owned(),
            field,
        }
    }

    /// [`EvaluateError::WrongType`] for `field`.
    fn wrong_type(&self, field: String, expected: &'static str) -> EvaluateError {
        EvaluateError::WrongType {
            rule_id: self.rule_id.to_owned(),
            field,
            expected,
        }
    }

    /// Fails unless the field is present, not null and not blank text.
    fn require(&self, path: &FieldPath) -> Result<(), EvaluateError> {
        match self.event.field(path).as_deref() {
            None | Some(Value::Null) => Err(self.missing(path.to_string())),
            Some(Value::String(s)) if s.trim().is_empty() => Err(self.missing(path.to_string())),
            Some(_) => Ok(()),
        }
    }

    /// The text of one placeholder; missing data is an error.
    fn text(&self, path: &FieldPath) -> Result<String, EvaluateError> {
        let value = self.event.field(path);
        match value.as_deref().map(text_of) {
            Some(Ok(Some(text))) => Ok(text),
            None | Some(Ok(None)) => Err(self.missing(path.to_string())),
            Some(Err(expected)) => Err(self.wrong_type(path.to_string(), expected)),
        }
    }

    /// Renders an event template.
    fn render(&self, template: &Template) -> Result<String, EvaluateError> {
        template.render(|path| self.text(path))
    }

    /// Renders a section: the title, then one `- ` line per element. `None` when the list is
    /// absent, null or empty.
    fn section(&self, section: &Section) -> Result<Option<String>, EvaluateError> {
        let list = self.event.field(&section.items);
        let items = match list.as_deref() {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(items)) if items.is_empty() => return Ok(None),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(self.wrong_type(section.items.to_string(), "a list")),
        };
        let mut block = self.render(&section.title)?;
        for (index, element) in items.iter().enumerate() {
            let line = section
                .item
                .render(|path| match walk(element, path.parts()) {
                    None => Ok(String::new()),
                    Some(value) => text_of(value).map(Option::unwrap_or_default).map_err(|e| {
                        self.wrong_type(format!("{}[{index}].{path}", section.items), e)
                    }),
                })?;
            block.push_str("\n- ");
            block.push_str(&line);
        }
        Ok(Some(block))
    }
}
