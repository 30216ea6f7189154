//! Text templates with `{placeholder}`s, and the field paths they (and conditions) name.
//!
//! A template is text in which `{path}` is replaced by a field's value; `{{` and `}}` write a
//! literal brace. Templates are parsed once, when the rules are loaded, so syntax errors stop
//! start-up instead of surfacing on the first message.

use std::fmt;

/// Where a field path starts, which decides which paths are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The inbound event: `data.…` or one of the envelope attributes in [`ENVELOPE_FIELDS`].
    Event,
    /// One element of a section's list: any path, relative to the element.
    Item,
}

/// The CloudEvents attributes a path may name (each on its own, without further parts).
pub(crate) const ENVELOPE_FIELDS: &[&str] = &["institution", "source", "subject", "id", "type"];

/// A validated dotted path such as `data.application_id` or, in an item, `sue_id`.
/// A part made of digits indexes a list: `data.errors.0.code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath {
    /// The parts between the dots; never empty.
    parts: Vec<String>,
}

impl FieldPath {
    /// Checks a path as written in a rules file; the error says what is wrong.
    pub(crate) fn parse(text: &str, scope: Scope) -> Result<Self, String> {
        let parts: Vec<String> = text.split('.').map(str::to_owned).collect();
        let well_formed = parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        });
        if !well_formed {
            return Err(format!(
                "`{text}` is not a field path (write names joined by dots, e.g. data.application_id)"
            ));
        }
        if scope == Scope::Event {
            let root = parts[0].as_str();
            let valid = if root == "data" {
                parts.len() > 1
            } else {
                ENVELOPE_FIELDS.contains(&root) && parts.len() == 1
            };
            if !valid {
                return Err(format!(
                    "`{text}` is not a field of the event (use data.<field>, or one of {})",
                    ENVELOPE_FIELDS.join(", ")
                ));
            }
        }
        Ok(Self { parts })
    }

    /// The first part: `data` or an envelope attribute (for event paths).
    pub(crate) fn root(&self) -> &str {
        &self.parts[0]
    }

    /// The parts after the first.
    pub(crate) fn rest(&self) -> &[String] {
        &self.parts[1..]
    }

    /// All parts, for walking item paths from the element.
    pub(crate) fn parts(&self) -> &[String] {
        &self.parts
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parts.join("."))
    }
}

/// A parsed template: literal text and placeholders, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    /// The pieces, rendered one after the other.
    pieces: Vec<Piece>,
}

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Copied as is (with `{{`/`}}` already turned into single braces).
    Text(String),
    /// Replaced by the field's value.
    Field(FieldPath),
}

impl Template {
    /// Parses `text`; placeholders must be valid paths in `scope`.
    pub(crate) fn parse(text: &str, scope: Scope) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(format!(
                        "{text:?} has a `}}` without a `{{` (write `}}}}` for a literal brace)"
                    ))
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => {
                                return Err(format!(
                                    "{text:?} has a `{{` that is not closed by `}}` (write `{{{{` \
                                     for a literal brace)"
                                ))
                            }
                            Some(c) => name.push(c),
                        }
                    }
                    if name.is_empty() {
                        return Err(format!("{text:?} has an empty placeholder `{{}}`"));
                    }
                    let path = FieldPath::parse(&name, scope)
                        .map_err(|problem| format!("in {text:?}: {problem}"))?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(path));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Self { pieces })
    }

    /// Renders the template, asking `value_of` for the text of each placeholder.
    pub(crate) fn render<E>(
        &self,
        mut value_of: impl FnMut(&FieldPath) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Field(path) => out.push_str(&value_of(path)?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str) -> String {
        Template::parse(template, Scope::Event)
            .unwrap()
            .render(|path| Ok::<_, ()>(format!("<{path}>")))
            .unwrap()
    }

    #[test]
    fn placeholders_are_replaced_and_text_is_kept() {
        assert_eq!(
            render("Ansøgning {data.application_id} ({institution})"),
            "Ansøgning <data.application_id> (<institution>)"
        );
    }

    #[test]
    fn doubled_braces_are_literal_braces() {
        assert_eq!(render("{{ikke et felt}} {id}"), "{ikke et felt} <id>");
    }

    #[test]
    fn template_without_placeholders_renders_as_written() {
        assert_eq!(render("Bare tekst"), "Bare tekst");
        assert_eq!(render(""), "");
    }

    #[test]
    fn unbalanced_braces_are_refused() {
        for text in ["{data.x", "data.x}", "{data.{x}}", "{}", "a } b"] {
            assert!(
                Template::parse(text, Scope::Event).is_err(),
                "{text:?} was accepted"
            );
        }
    }

    #[test]
    fn unknown_roots_are_refused_in_event_templates_but_not_in_items() {
        for text in [
            "{dato.x}",
            "{data}",
            "{institution.name}",
            "{name}",
            "{data..x}",
        ] {
            assert!(
                Template::parse(text, Scope::Event).is_err(),
                "{text:?} was accepted"
            );
        }
        assert!(Template::parse("{name} ({sue_id})", Scope::Item).is_ok());
    }
}
