//! Manifests as users write them for kubectl: multi-document YAML (`---` between
//! documents) or JSON, with `kind: List` wrappers. [`parse_documents`] splits the text into
//! JSON values, each with its place in the file; [`parse_objects`] also resolves each one's
//! `apiVersion` and `kind` to a served [`ResourceType`]. Errors say which document (and the
//! line it starts on) and what is wrong with it.

use std::fmt;

use serde_json::Value;

use crate::object::Object;
use crate::resources::{self, LookupError, ResourceType};
use crate::validation::ValidationErrors;

/// Where a document sits in a manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Which document of the file, counting from 0 (empty documents count: they are
    /// documents, only skipped). Messages print it counting from 1, as a person does.
    pub index: usize,
    /// Which item of a `kind: List` document, counting from 0.
    pub item: Option<usize>,
    /// The line (from 1) where the document's content starts.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.index + 1)?;
        if let Some(item) = self.item {
            write!(f, ", item {}", item + 1)?;
        }
        write!(f, " (line {})", self.line)
    }
}

/// One object of a manifest, as JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Where it came from.
    pub location: Location,
    /// The object.
    pub value: Value,
}

/// Why a manifest does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The YAML is malformed; `message` is the parser's, with lines counted in the whole file.
    #[error("{at}: malformed YAML: {message}")]
    Yaml {
        /// The document.
        at: Location,
        /// Line of the error in the file, when the parser knows it.
        line: Option<usize>,
        /// Column of the error, when the parser knows it.
        column: Option<usize>,
        /// What the parser found wrong.
        message: String,
    },
    /// The JSON is malformed.
    #[error("{at}: malformed JSON at line {line} column {column}: {message}")]
    Json {
        /// The document.
        at: Location,
        /// Line of the error in the file.
        line: usize,
        /// Column of the error.
        column: usize,
        /// What the parser found wrong.
        message: String,
    },
    /// The document is a list or a scalar, not an object.
    #[error("{at}: an object must be a mapping (like `apiVersion: v1`), not {found}")]
    NotAnObject {
        /// The document.
        at: Location,
        /// What was found instead: `a sequence`, `a string`, ...
        found: &'static str,
    },
    /// A `kind: List` without an `items` sequence.
    #[error("{at}: a {kind} must have `items`, a sequence of objects")]
    BadList {
        /// The document.
        at: Location,
        /// The list kind (`List`, `PodList`).
        kind: String,
    },
    /// `apiVersion` is missing or not a string.
    #[error("{at}: apiVersion is not set; every object needs one (e.g. `apiVersion: apps/v1`)")]
    MissingApiVersion {
        /// The document.
        at: Location,
    },
    /// `kind` is missing or not a string.
    #[error("{at}: kind is not set; every object needs one (e.g. `kind: Deployment`)")]
    MissingKind {
        /// The document.
        at: Location,
    },
    /// The `apiVersion` and `kind` name no served type.
    #[error("{at}: {reason}")]
    UnknownType {
        /// The document.
        at: Location,
        /// Why the type is not served.
        reason: LookupError,
    },
}

impl ManifestError {
    /// The document the error is about.
    pub fn location(&self) -> Location {
        match self {
            ManifestError::Yaml { at, .. }
            | ManifestError::Json { at, .. }
            | ManifestError::NotAnObject { at, .. }
            | ManifestError::BadList { at, .. }
            | ManifestError::MissingApiVersion { at }
            | ManifestError::MissingKind { at }
            | ManifestError::UnknownType { at, .. } => *at,
        }
    }
}

/// Splits a manifest into its objects, in file order. Text that starts with `{` or `[` is
/// read as JSON (one value or several in a row), anything else as YAML documents separated
/// by `---`. Empty documents (a lone `---`, comments only) are skipped; the items of a
/// `kind: List` (or any `*List` with `items`) become documents of their own.
///
/// # Errors
/// The first document that is malformed or not an object.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, ManifestError> {
    let trimmed = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    let raw = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        parse_json_stream(text)?
    } else {
        parse_yaml_stream(text)?
    };
    let mut documents = Vec::new();
    for (location, value) in raw {
        match value {
            Value::Null => {}
            Value::Object(_) => flatten(location, value, &mut documents)?,
            other => {
                return Err(ManifestError::NotAnObject {
                    at: location,
                    found: describe(&other),
                });
            }
        }
    }
    Ok(documents)
}

/// [`parse_documents`], then resolves each object's type.
///
/// # Errors
/// The first document that does not parse, lacks `apiVersion` or `kind`, or names a type
/// Skiff does not serve (`unknown kind "Foo" for apiVersion "v1"`, `apiVersion "apps/v2" is
/// not served for kind Deployment`).
pub fn parse_objects(text: &str) -> Result<Vec<TypedObject>, ManifestError> {
    parse_documents(text)?
        .into_iter()
        .map(TypedObject::from_document)
        .collect()
}

/// An object of a manifest whose type is served: its registry entry and its JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct TypedObject {
    /// The object's type.
    pub resource: &'static ResourceType,
    /// The object as written.
    pub value: Value,
    /// Where it came from.
    pub location: Location,
}

impl TypedObject {
    /// Resolves a document's `apiVersion` and `kind`.
    ///
    /// # Errors
    /// When either is missing or they name no served type.
    pub fn from_document(document: Document) -> Result<Self, ManifestError> {
        let at = document.location;
        let api_version = document
            .value
            .get("apiVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(ManifestError::MissingApiVersion { at })?;
        let kind = document
            .value
            .get("kind")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(ManifestError::MissingKind { at })?;
        let resource = resources::lookup_kind(api_version, kind)
            .map_err(|reason| ManifestError::UnknownType { at, reason })?;
        Ok(TypedObject {
            resource,
            value: document.value,
            location: at,
        })
    }

    fn metadata_str(&self, field: &str) -> Option<&str> {
        self.value
            .get("metadata")?
            .get(field)?
            .as_str()
            .filter(|s| !s.is_empty())
    }

    /// `metadata.name`, when set.
    pub fn name(&self) -> Option<&str> {
        self.metadata_str("name")
    }

    /// `metadata.namespace`, when set.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata_str("namespace")
    }

    /// `metadata.generateName`, when set.
    pub fn generate_name(&self) -> Option<&str> {
        self.metadata_str("generateName")
    }

    /// The namespace the object goes to: its own, else `default_namespace` for a namespaced
    /// type (what `kubectl apply -n` does); `None` for a cluster-scoped type.
    pub fn target_namespace<'a>(&'a self, default_namespace: &'a str) -> Option<&'a str> {
        self.resource
            .namespaced()
            .then(|| self.namespace().unwrap_or(default_namespace))
    }

    /// Decodes the object into its typed struct.
    ///
    /// # Errors
    /// A field of the wrong type, at its path.
    pub fn decode(&self) -> Result<Object, ValidationErrors> {
        Object::decode(self.resource, &self.value)
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

fn flatten(location: Location, value: Value, out: &mut Vec<Document>) -> Result<(), ManifestError> {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let is_list = kind == "List" || (kind.ends_with("List") && value.get("items").is_some());
    if !is_list {
        out.push(Document { location, value });
        return Ok(());
    }
    let kind = kind.to_owned();
    let Some(Value::Array(items)) = value.get("items").cloned() else {
        if value.get("items").is_none_or(Value::is_null) {
            return Ok(());
        }
        return Err(ManifestError::BadList { at: location, kind });
    };
    for (i, item) in items.into_iter().enumerate() {
        let at = Location {
            item: Some(i),
            ..location
        };
        match item {
            Value::Object(_) => out.push(Document {
                location: at,
                value: item,
            }),
            other => {
                return Err(ManifestError::NotAnObject {
                    at,
                    found: describe(&other),
                });
            }
        }
    }
    Ok(())
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&c| c != b'\n').count() + 1;
    (line, column)
}

fn parse_json_stream(text: &str) -> Result<Vec<(Location, Value)>, ManifestError> {
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        let skipped = text
            .get(start..)
            .unwrap_or_default()
            .find(|c: char| !c.is_whitespace() && c != '\u{feff}')
            .map_or(text.len(), |skip| start + skip);
        let at = Location {
            index: out.len(),
            item: None,
            line: line_column(text, skipped).0,
        };
        match stream.next() {
            None => return Ok(out),
            Some(Ok(value)) => out.push((at, value)),
            Some(Err(error)) => {
                let mut message = error.to_string();
                if let Some(cut) = message.rfind(" at line ") {
                    message.truncate(cut);
                }
                return Err(ManifestError::Json {
                    at,
                    line: error.line(),
                    column: error.column(),
                    message,
                });
            }
        }
    }
}

/// A YAML document's text and the line (from 1) its text starts on.
struct Chunk<'a> {
    text: &'a str,
    first_line: usize,
    explicit: bool,
}

fn is_document_start(line: &str) -> bool {
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

fn is_document_end(line: &str) -> bool {
    line == "..." || line.starts_with("... ") || line.starts_with("...\t")
}

/// Splits at `---` and `...` lines (which always end a document in YAML, even inside block
/// scalars). A chunk opened by `---` includes that line, so `--- {a: 1}` parses.
fn split_yaml(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut first_line = 1;
    let mut explicit = false;
    let mut offset = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let line_number = number + 1;
        if is_document_start(bare) || is_document_end(bare) {
            chunks.push(Chunk {
                text: &text[start..offset],
                first_line,
                explicit,
            });
            if is_document_start(bare) {
                start = offset;
                explicit = true;
            } else {
                start = offset + line.len();
                explicit = false;
            }
            first_line = if explicit {
                line_number
            } else {
                line_number + 1
            };
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        text: &text[start..],
        first_line,
        explicit,
    });
    chunks
}

fn has_content(chunk: &str) -> bool {
    chunk.lines().any(|line| {
        let line = line.trim();
        !(line.is_empty() || line.starts_with('#') || line.starts_with('%'))
    })
}

/// The line of the chunk's first content, for messages.
fn content_line(chunk: &Chunk<'_>) -> usize {
    chunk
        .text
        .lines()
        .position(|line| {
            let line = line.trim();
            !(line.is_empty() || line.starts_with('#') || line == "---")
        })
        .map_or(chunk.first_line, |i| chunk.first_line + i)
}

/// Rewrites `line N` in a parser message to count from the start of the file.
fn shift_lines(message: &str, offset: usize) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(found) = rest.find("line ") {
        let (before, after) = rest.split_at(found + "line ".len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

fn parse_yaml_stream(text: &str) -> Result<Vec<(Location, Value)>, ManifestError> {
    let mut out = Vec::new();
    let mut index = 0;
    for chunk in split_yaml(text) {
        if !chunk.explicit && !has_content(chunk.text) {
            continue;
        }
        let at = Location {
            index,
            item: None,
            line: content_line(&chunk),
        };
        index += 1;
        let yaml_error = |error: serde_yaml::Error| {
            let offset = chunk.first_line - 1;
            let location = error.location();
            ManifestError::Yaml {
                at,
                line: location.as_ref().map(|l| l.line() + offset),
                column: location.as_ref().map(serde_yaml::Location::column),
                message: shift_lines(&error.to_string(), offset),
            }
        };
        let mut yaml: serde_yaml::Value = serde_yaml::from_str(chunk.text).map_err(yaml_error)?;
        yaml.apply_merge().map_err(yaml_error)?;
        let value = serde_json::to_value(&yaml).map_err(|error| ManifestError::Yaml {
            at,
            line: None,
            column: None,
            message: error.to_string(),
        })?;
        out.push((at, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"# The shop: a namespace, the web tier and its service.
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports:
            - containerPort: 80
          resources:
            requests:
              cpu: 100m
              memory: 128Mi
            limits:
              cpu: 1
              memory: 256Mi
---
# A lone comment makes an empty document.
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: 80
"#;

    #[test]
    fn multi_document_yaml_yields_each_object_with_its_place() {
        let documents = parse_documents(APP).expect("parses");
        let kinds: Vec<&str> = documents
            .iter()
            .map(|d| d.value["kind"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(kinds, ["Namespace", "Deployment", "Service"]);
        let places: Vec<(usize, usize)> = documents
            .iter()
            .map(|d| (d.location.index, d.location.line))
            .collect();
        assert_eq!(places, [(0, 2), (1, 7), (3, 37)]);
        assert_eq!(
            documents[1].value["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
                ["cpu"],
            1
        );
    }

    #[test]
    fn typed_objects_know_their_type_name_and_namespace() {
        let objects = parse_objects(APP).expect("parses");
        assert_eq!(objects[0].resource.kind, "Namespace");
        assert_eq!(objects[0].name(), Some("shop"));
        assert_eq!(objects[0].target_namespace("default"), None);
        assert_eq!(objects[1].resource.plural, "deployments");
        assert_eq!(objects[1].namespace(), Some("shop"));
        assert_eq!(objects[2].target_namespace("default"), Some("shop"));
        assert!(objects[1].decode().is_ok());
    }

    #[test]
    fn empty_and_comment_only_manifests_have_no_documents() {
        assert!(parse_documents("").expect("empty").is_empty());
        assert!(
            parse_documents("---\n# nothing\n---\n\n")
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn leading_separator_does_not_count_as_a_document() {
        let documents = parse_documents("---\napiVersion: v1\nkind: Pod\n").expect("parses");
        assert_eq!(documents.len(), 1);
        assert_eq!(documents[0].location.index, 0);
        assert_eq!(documents[0].location.line, 2);
    }

    #[test]
    fn lists_are_flattened_into_their_items() {
        let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: b}
"#;
        let objects = parse_objects(text).expect("parses");
        let names: Vec<_> = objects.iter().map(|o| o.name()).collect();
        assert_eq!(names, [Some("a"), Some("b")]);
        assert_eq!(objects[1].location.item, Some(1));
        assert_eq!(
            parse_documents("kind: List\nitems: [1]\n")
                .expect_err("scalar item")
                .to_string(),
            "document 1, item 1 (line 1): an object must be a mapping (like `apiVersion: v1`), not a number"
        );
    }

    #[test]
    fn json_manifests_parse_including_several_in_a_row() {
        let text = "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"a\"}}\n\n{\"apiVersion\": \"v1\", \"kind\": \"Pod\",\n\t\"metadata\": {\"name\": \"b\"}}";
        let documents = parse_documents(text).expect("parses");
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[1].location.line, 3);
        let error = parse_documents("{\"a\": }").expect_err("malformed");
        assert!(
            error
                .to_string()
                .starts_with("document 1 (line 1): malformed JSON at line 1 column 7: "),
            "{error}"
        );
    }

    #[test]
    fn malformed_yaml_names_the_document_and_the_line_in_the_file() {
        let text = "apiVersion: v1\nkind: Pod\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n   bad: indent\n";
        let error = parse_documents(text).expect_err("malformed");
        let ManifestError::Yaml { at, line, .. } = &error else {
            panic!("expected a YAML error, got {error}");
        };
        assert_eq!(at.index, 1);
        assert_eq!(at.line, 4);
        assert_eq!(*line, Some(8));
        assert!(error.to_string().contains("line 8"), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("document 2 (line 4): malformed YAML: "),
            "{error}"
        );
    }

    #[test]
    fn missing_api_version_or_kind_is_reported_per_document() {
        let error = parse_objects("kind: Pod\n").expect_err("no apiVersion");
        assert_eq!(
            error.to_string(),
            "document 1 (line 1): apiVersion is not set; every object needs one (e.g. `apiVersion: apps/v1`)"
        );
        let error =
            parse_objects("apiVersion: v1\nkind: Pod\n---\napiVersion: v1\n").expect_err("no kind");
        assert_eq!(error.location().index, 1);
        assert!(matches!(error, ManifestError::MissingKind { .. }));
    }

    #[test]
    fn unknown_kinds_and_unserved_versions_are_reported() {
        let error = parse_objects("apiVersion: v1\nkind: Foo\n").expect_err("unknown");
        assert_eq!(
            error.to_string(),
            r#"document 1 (line 1): unknown kind "Foo" for apiVersion "v1""#
        );
        let error = parse_objects("apiVersion: apps/v2\nkind: Deployment\n").expect_err("version");
        assert_eq!(
            error.to_string(),
            r#"document 1 (line 1): apiVersion "apps/v2" is not served for kind Deployment; use apiVersion "apps/v1""#
        );
    }

    #[test]
    fn scalar_documents_are_not_objects() {
        let error = parse_documents("just text\n").expect_err("scalar");
        assert_eq!(
            error.to_string(),
            "document 1 (line 1): an object must be a mapping (like `apiVersion: v1`), not a string"
        );
    }

    #[test]
    fn separators_inside_block_scalars_still_split_documents_as_yaml_does() {
        let text = "apiVersion: v1\nkind: ConfigMap\ndata:\n  a: |\n    x\n---\napiVersion: v1\nkind: ConfigMap\n";
        assert_eq!(parse_documents(text).expect("parses").len(), 2);
    }

    #[test]
    fn anchors_and_merge_keys_are_resolved() {
        let text =
            "apiVersion: v1\nkind: ConfigMap\nbase: &b {x: '1'}\ndata:\n  <<: *b\n  y: '2'\n";
        let documents = parse_documents(text).expect("parses");
        assert_eq!(
            documents[0].value["data"],
            serde_json::json!({"x": "1", "y": "2"})
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_text_never_panics(text in proptest::prelude::any::<String>()) {
            let _ = parse_objects(&text);
        }

        #[test]
        fn parsing_yaml_like_text_never_panics(text in "[-a-zA-Z0-9:#{}\\[\\], \n.'\"|>&*!%]{0,120}") {
            let _ = parse_objects(&text);
        }
    }

    #[test]
    fn document_end_markers_and_inline_documents_are_understood() {
        let text = "--- {apiVersion: v1, kind: Pod}\n...\napiVersion: v1\nkind: Service\n";
        let documents = parse_documents(text).expect("parses");
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[1].location.line, 3);
    }
}
