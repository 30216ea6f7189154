//! [`RuleSet`]: the loaded rules, and the entry point the rule worker calls per event.

use std::path::Path;

use crate::effect::Effect;
use crate::error::{EvaluateError, RuleError};
use crate::event::EventView;
use crate::format::parse_rules;
use crate::rule::Rule;

/// The default rules file, compiled in: used when the operator configures none.
pub const DEFAULT_RULES_TOML: &str = include_str!("../default-rules.toml");

/// A validated set of rules, in file order. Cheap to share: evaluate takes `&self`.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// The rules, in the order of the file (effects come out in this order).
    rules: Vec<Rule>,
}

impl RuleSet {
    /// The built-in rules ([`DEFAULT_RULES_TOML`]), covering the contract examples.
    ///
    /// # Panics
    ///
    /// Only if the embedded file is invalid, which a test of this crate rules out.
    pub fn builtin() -> RuleSet {
        match Self::from_toml(DEFAULT_RULES_TOML) {
            Ok(rules) => rules,
            Err(error) => panic!("the built-in default-rules.toml is invalid: {error}"),
        }
    }

    /// Reads and validates rules from TOML text (format: [`crate::format`]).
    pub fn from_toml(text: &str) -> Result<RuleSet, RuleError> {
        Ok(RuleSet {
            rules: parse_rules(text)?,
        })
    }

    /// Reads and validates a rules file; every error names the file.
    pub fn load(path: &Path) -> Result<RuleSet, RuleError> {
        let text = std::fs::read_to_string(path).map_err(|error| RuleError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::from_toml(&text).map_err(|error| RuleError::InFile {
            path: path.to_owned(),
            error: Box::new(error),
        })
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every effect the event causes, in rule order: for each rule, the follow-ups it resolves
    /// or the one it raises.
    ///
    /// Fails when a rule that applies to the event needs data the event lacks (or has in an
    /// unusable shape); the worker then dead-letters the message and no effect is applied.
    pub fn evaluate(&self, event: &EventView<'_>) -> Result<Vec<Effect>, EvaluateError> {
        let mut effects = Vec::new();
        for rule in &self.rules {
            rule.evaluate(event, &mut effects)?;
        }
        Ok(effects)
    }

    /// True when some rule raises or resolves on this event type (ignoring its conditions):
    /// tells an event type no rule knows apart from one whose rules chose not to act.
    pub fn handles(&self, event_type: &str) -> bool {
        self.rules.iter().any(|rule| rule.handles(event_type))
    }
}
