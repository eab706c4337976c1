//! Request bodies checked against JSON Schema files: one file in `api/schemas/` is both the check (the
//! `jsonschema` crate, draft 2020-12) and the body's schema in the OpenAPI document, so the documentation
//! cannot drift from what the api accepts.
//!
//! A body that does not fit its schema is 422 in the eHealth shape, one `invalid` entry per problem, each
//! named by its JSON path (`$.secret.resource_name`; a missing property by its own path, `$.secret.action`).

use std::borrow::Cow;

use ehealth_domain::{InvalidEntry, Rejection, Rule};
use jsonschema::{error::ValidationErrorKind, paths::LocationSegment, ValidationError, Validator};
use serde_json::Value;
use utoipa::openapi::{schema::Schema, ObjectBuilder, RefOr};

use crate::ApiError;

/// A compiled body schema and the document it came from.
pub struct BodySchema {
    /// The schema as written in its file.
    document: Value,
    validator: Validator,
}

/// The longest rule description taken from the validator's own message (its messages quote the input).
const MAX_DESCRIPTION_CHARS: usize = 200;

impl BodySchema {
    /// Compiles the schema `source` (the text of a file in `api/schemas/`, embedded with `include_str!`).
    /// A schema that does not compile is a defect of this program, not of a request: this panics, and a unit
    /// test compiles every schema.
    pub fn compile(source: &str) -> Self {
        let document: Value =
            serde_json::from_str(source).expect("a body schema file is valid JSON");
        let validator = jsonschema::draft202012::new(&document)
            .expect("a body schema file compiles as JSON Schema draft 2020-12");
        Self {
            document,
            validator,
        }
    }

    /// Checks `body`: `Ok` when it fits, else 422 with every problem as an `invalid` entry, ordered by path.
    pub fn validate(&self, body: &Value) -> Result<(), ApiError> {
        let mut invalid: Vec<InvalidEntry> =
            self.validator.iter_errors(body).flat_map(entries).collect();
        if invalid.is_empty() {
            return Ok(());
        }
        invalid.sort_by(|a, b| a.entry.cmp(&b.entry));
        invalid.dedup();
        let Some(first) = invalid.first() else {
            return Ok(());
        };
        let mut rejection = Rejection::invalid(&first.entry, "", "");
        rejection.invalid = invalid;
        Err(rejection.into())
    }

    /// The schema as the OpenAPI document shows it: the file without `$schema` (the document's own dialect,
    /// JSON Schema 2020-12, applies).
    pub fn openapi_schema(&self) -> RefOr<Schema> {
        let mut document = self.document.clone();
        if let Some(object) = document.as_object_mut() {
            object.remove("$schema");
        }
        serde_json::from_value(document).unwrap_or_else(|e| {
            tracing::error!(error = %e, "a body schema cannot be shown in the OpenAPI document");
            RefOr::T(Schema::Object(ObjectBuilder::new().build()))
        })
    }

    /// The file's JSON, as written.
    pub fn document(&self) -> &Value {
        &self.document
    }
}

/// The eHealth entries of one validation error.
fn entries(error: ValidationError<'_>) -> Vec<InvalidEntry> {
    let mut path = String::from("$");
    for segment in error.instance_path().segments() {
        match segment {
            LocationSegment::Property(name) => {
                path.push('.');
                path.push_str(&name);
            }
            LocationSegment::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    let entry = |entry: String, rule: &str, description: Cow<'_, str>| InvalidEntry {
        entry,
        entry_type: "json_data_property".to_owned(),
        rules: vec![Rule {
            rule: rule.to_owned(),
            description: description.into_owned(),
            params: Value::Null,
        }],
    };
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            vec![entry(
                format!("{path}.{name}"),
                "required",
                "required property is missing".into(),
            )]
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|name| {
                entry(
                    format!("{path}.{name}"),
                    "schema",
                    "this property is not allowed".into(),
                )
            })
            .collect(),
        ValidationErrorKind::Enum { options } => {
            let allowed: Vec<String> = options
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_owned))
                .collect();
            vec![entry(
                path,
                "inclusion",
                format!(
                    "value is not allowed in enum: one of {}",
                    allowed.join(", ")
                )
                .into(),
            )]
        }
        ValidationErrorKind::Type { kind } => vec![entry(
            path,
            "cast",
            format!("expected {}", type_name(kind)).into(),
        )],
        ValidationErrorKind::MinLength { limit } => vec![entry(
            path,
            "length",
            format!("must be at least {limit} characters long").into(),
        )],
        ValidationErrorKind::MaxLength { limit } => vec![entry(
            path,
            "length",
            format!("must be at most {limit} characters long").into(),
        )],
        ValidationErrorKind::Pattern { pattern } => vec![entry(
            path,
            "format",
            format!("does not match the pattern {pattern}").into(),
        )],
        kind => {
            let message: String = error
                .to_string()
                .chars()
                .take(MAX_DESCRIPTION_CHARS)
                .collect();
            let rule = match kind.keyword() {
                "format" => "format",
                "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf" => {
                    "number"
                }
                "minItems" | "maxItems" => "length",
                _ => "schema",
            };
            vec![entry(path, rule, message.into())]
        }
    }
}

/// `string`, `object`, … or `one of string, null`.
fn type_name(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(single) => single.to_string(),
        jsonschema::error::TypeKind::Multiple(set) => {
            let names: Vec<String> = set.iter().map(|t| t.to_string()).collect();
            format!("one of {}", names.join(", "))
        }
    }
}
