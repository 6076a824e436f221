//! How objects reach the terminal: tables ([`table`]), YAML and JSON ([`yaml_json`]) and
//! `-o name` ([`name`]). Every printer turns objects into a `String`, so output is
//! testable without a server; only [`write_stdout`] touches the terminal. [`jsonpath`]
//! serves `-o jsonpath=...` and `-o custom-columns=...`.
//!
//! A command gathers [`Batch`]es (objects of one type each) and [`render`]s them in the
//! [`OutputFormat`] the user chose.

pub mod jsonpath;
pub mod name;
pub mod table;
pub mod yaml_json;

use std::{io::Write, str::FromStr};

use serde_json::Value;
use skiff_api::resources::ResourceType;

pub use jsonpath::{CustomColumn, Template, TemplateError};
pub use table::Table;

use crate::columns::{self, TableOptions};

/// `-o`: how to print objects.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum OutputFormat {
    /// The kind's default columns.
    #[default]
    Table,
    /// The default columns and the kind's extra ones.
    Wide,
    /// The objects as YAML.
    Yaml,
    /// The objects as JSON.
    Json,
    /// `kind.group/name` lines.
    Name,
    /// `jsonpath=TEMPLATE`: the template rendered against the object (or the List).
    JsonPath(Template),
    /// `custom-columns=HEADER:PATH,...`: a table of those columns.
    CustomColumns(Vec<CustomColumn>),
}

/// An `-o` value no printer handles, or a template that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// No such printer.
    #[error(
        "unable to match a printer suitable for the output format {0:?}, allowed formats are: \
         custom-columns,json,jsonpath,name,wide,yaml"
    )]
    Unknown(String),
    /// A jsonpath or custom-columns template that does not parse.
    #[error(transparent)]
    Template(#[from] TemplateError),
}

impl FromStr for OutputFormat {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(template) = s.strip_prefix("jsonpath=") {
            return Ok(Self::JsonPath(Template::parse(template)?));
        }
        if let Some(spec) = s.strip_prefix("custom-columns=") {
            return Ok(Self::CustomColumns(jsonpath::parse_custom_columns(spec)?));
        }
        match s {
            "wide" => Ok(Self::Wide),
            "yaml" => Ok(Self::Yaml),
            "json" => Ok(Self::Json),
            "name" => Ok(Self::Name),
            other => Err(FormatError::Unknown(other.to_owned())),
        }
    }
}

impl OutputFormat {
    /// Tables (plain or wide): the formats meant for people.
    pub fn is_table(&self) -> bool {
        matches!(self, Self::Table | Self::Wide)
    }

    /// Formats that print a whole document (an object or a List), even an empty one.
    pub fn is_document(&self) -> bool {
        matches!(self, Self::Yaml | Self::Json | Self::JsonPath(_))
    }
}

/// Objects of one type, as a command gathered them.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Their type.
    pub resource: &'static ResourceType,
    /// The objects, as the server sent them.
    pub objects: Vec<Value>,
}

/// Renders batches in `format`. With `single` (one object asked for by name) YAML, JSON
/// and JSONPath see the object itself; otherwise a `List` of every object. Tables of
/// several types are separated by a blank line; `options` says which columns they have.
pub fn render(
    format: &OutputFormat,
    batches: &[Batch],
    single: bool,
    options: &TableOptions,
    no_headers: bool,
) -> String {
    match format {
        OutputFormat::Table | OutputFormat::Wide => batches
            .iter()
            .filter(|b| !b.objects.is_empty())
            .map(|b| columns::table(b.resource, &b.objects, options).render(no_headers))
            .collect::<Vec<_>>()
            .join("\n"),
        OutputFormat::Name => batches
            .iter()
            .map(|b| name::render(b.resource, &b.objects))
            .collect(),
        OutputFormat::CustomColumns(columns) => {
            let objects: Vec<&Value> = batches.iter().flat_map(|b| &b.objects).collect();
            custom_columns_table(columns, &objects).render(no_headers)
        }
        OutputFormat::Yaml | OutputFormat::Json | OutputFormat::JsonPath(_) => {
            let mut objects: Vec<Value> = batches
                .iter()
                .flat_map(|b| b.objects.iter().cloned())
                .collect();
            let value = if single && objects.len() == 1 {
                objects.remove(0)
            } else {
                yaml_json::list(objects)
            };
            render_value(format, &value)
        }
    }
}

/// The table of `-o custom-columns`, headers included.
pub fn custom_columns_table(columns: &[CustomColumn], objects: &[&Value]) -> Table {
    let mut table = Table::new(columns.iter().map(|c| c.header.clone()));
    for object in objects {
        table.push(
            columns
                .iter()
                .map(|c| jsonpath::custom_cell(c, object))
                .collect(),
        );
    }
    table
}

/// One value as YAML, JSON or a JSONPath template (the other formats fall back to YAML).
pub fn render_value(format: &OutputFormat, value: &Value) -> String {
    match format {
        OutputFormat::Json => yaml_json::to_json(value),
        OutputFormat::JsonPath(template) => template.render(value),
        _ => yaml_json::to_yaml(value),
    }
}

/// Writes to standard output. A closed pipe (`skiffctl get pods | head -1`) ends the
/// program quietly, as it ends kubectl.
pub fn write_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {error}");
        std::process::exit(1);
    }
}
