//! Form building blocks: inputs that keep what was typed and show the API's validation message
//! next to the field it names. The API names fields in backticks with their JSON path
//! (`` `config.sqlite.path`: must not be empty ``); the console's form fields are named by the
//! same paths, so a message lands under the field whose name it mentions (or a parent of it),
//! and at the top of the form when it names none.

use maud::{Markup, html};

use super::session::Form;

/// Where the messages of a failed submit go.
#[derive(Debug, Default)]
pub struct Problems {
    /// (field, message); field "" for the top of the form.
    pub messages: Vec<(String, String)>,
}

impl Problems {
    /// Places `message` under the field it names among `fields`.
    pub fn place(message: &str, fields: &[&str]) -> Self {
        let named = message
            .split('`')
            .skip(1)
            .step_by(2)
            .find_map(|key| best_field(key, fields));
        Self {
            messages: vec![(named.unwrap_or_default(), message.to_owned())],
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            messages: vec![(field.to_owned(), message.into())],
        }
    }

    pub fn for_field(&self, field: &str) -> impl Iterator<Item = &str> {
        self.messages
            .iter()
            .filter(move |(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    /// Messages that name no field, shown at the top.
    pub fn general(&self) -> Markup {
        html! {
            @for message in self.for_field("") {
                div.form-errors id="error-message" { (message) }
            }
        }
    }
}

/// The field `key` names: the same name, or the field it is the parent of (`config.postgres`
/// → `config.postgres.host`), or its own parent field.
fn best_field(key: &str, fields: &[&str]) -> Option<String> {
    if let Some(exact) = fields.iter().find(|f| **f == key) {
        return Some((*exact).to_owned());
    }
    fields
        .iter()
        .filter(|f| key.starts_with(&format!("{f}.")))
        .max_by_key(|f| f.len())
        .map(|f| (*f).to_owned())
}

/// A labelled input keeping the submitted value (`password` inputs never echo it).
pub fn input(
    form: &Form,
    problems: &Problems,
    name: &str,
    label: &str,
    kind: &str,
    placeholder: &str,
) -> Markup {
    let value = if kind == "password" {
        ""
    } else {
        form.get(name)
    };
    html! {
        label for=(name) { (label) }
        input type=(kind) id=(name) name=(name) value=(value) placeholder=(placeholder) autocomplete="off";
        @for message in problems.for_field(name) {
            div.field-error { (message) }
        }
    }
}

/// A labelled select keeping the submitted choice (`default` when none).
pub fn select(
    form: &Form,
    problems: &Problems,
    name: &str,
    label: &str,
    options: &[(String, String)],
    default: &str,
) -> Markup {
    let chosen = match form.get(name) {
        "" => default,
        value => value,
    };
    html! {
        label for=(name) { (label) }
        select id=(name) name=(name) {
            @for (value, text) in options {
                option value=(value) selected[value == chosen] { (text) }
            }
        }
        @for message in problems.for_field(name) {
            div.field-error { (message) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_goes_under_the_field_it_names() {
        let fields = [
            "name",
            "config.host",
            "config.sqlite.path",
            "config.postgres.host",
        ];
        let p = Problems::place("`config.host` must not be empty", &fields);
        assert_eq!(p.messages[0].0, "config.host");
        let p = Problems::place("`config.sqlite.path`: must not be empty", &fields);
        assert_eq!(p.messages[0].0, "config.sqlite.path");
        let p = Problems::place("`config.sqlite.path.x` bad", &fields);
        assert_eq!(p.messages[0].0, "config.sqlite.path");
        let p = Problems::place("a source named `shop` exists", &fields);
        assert_eq!(p.messages[0].0, "");
    }
}
