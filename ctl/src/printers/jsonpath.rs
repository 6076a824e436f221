//! `-o jsonpath=TEMPLATE` and `-o custom-columns=HEADER:PATH,...`: kubectl's JSONPath
//! templates, the subset people type: `{.spec.clusterIP}`, `.items[0]`, `[*]`, `..name`,
//! `['a.b/c']`, filters like `[?(@.type=="Ready")]`, `{range .items[*]}...{end}` and
//! quoted text such as `{"\n"}`.
//!
//! Results print as kubectl prints them: strings bare, other values as JSON, several
//! results separated by a space.

use serde_json::Value;

/// A template that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("error parsing jsonpath {template}: {reason}")]
pub struct TemplateError {
    template: String,
    reason: String,
}

/// One step of a path.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// `.name` or `['name']`.
    Field(String),
    /// `[2]`, `[-1]`.
    Index(i64),
    /// `[*]` or `.*`: every element or member.
    All,
    /// `..name`: `name` at any depth.
    Descend(String),
    /// `[?(@.path == "value")]` (or `!=`); no operator tests that the path exists.
    Filter {
        path: Vec<Step>,
        op: Option<(bool, Value)>,
    },
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Part>),
}

/// A parsed JSONPath template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses a template; a bare path (`.metadata.name`) is taken as `{.metadata.name}`.
    ///
    /// # Errors
    /// Unbalanced braces, a malformed path, or `range` without `end`.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let err = |reason: &str| TemplateError {
            template: template.to_owned(),
            reason: reason.to_owned(),
        };
        let text = if template.contains('{') {
            template.to_owned()
        } else {
            format!("{{{template}}}")
        };
        let mut stack: Vec<(Vec<Step>, Vec<Part>)> = Vec::new();
        let mut parts: Vec<Part> = Vec::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                parts.push(Part::Text(rest.to_owned()));
                break;
            };
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = find_close(&rest[open..]).ok_or_else(|| err("unclosed {"))? + open;
            let inner = rest[open + 1..close].trim();
            rest = &rest[close + 1..];
            if let Some(path) = inner.strip_prefix("range ") {
                stack.push((
                    parse_path(path.trim()).map_err(|r| err(&r))?,
                    std::mem::take(&mut parts),
                ));
            } else if inner == "end" {
                let (path, outer) = stack.pop().ok_or_else(|| err("{end} without {range}"))?;
                let body = std::mem::replace(&mut parts, outer);
                parts.push(Part::Range(path, body));
            } else if let Some(literal) = quoted(inner) {
                parts.push(Part::Text(literal));
            } else {
                parts.push(Part::Path(parse_path(inner).map_err(|r| err(&r))?));
            }
        }
        if !stack.is_empty() {
            return Err(err("{range} without {end}"));
        }
        Ok(Self { parts })
    }

    /// Renders the template against `root`.
    pub fn render(&self, root: &Value) -> String {
        let mut out = String::new();
        render_parts(&self.parts, root, &mut out);
        out
    }

    /// The values the template's paths select, for a custom column.
    pub fn values(&self, root: &Value) -> Vec<Value> {
        let mut values = Vec::new();
        for part in &self.parts {
            if let Part::Path(path) = part {
                values.extend(select(path, root));
            }
        }
        values
    }
}

/// The index of the `}` closing the `{` at 0, skipping quoted text.
fn find_close(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '}' => return Some(i),
            None => {}
        }
    }
    None
}

/// The text of a quoted literal (`"\n"`, `'\t'`), with escapes read.
fn quoted(inner: &str) -> Option<String> {
    let q = inner.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = inner.strip_prefix(q)?.strip_suffix(q)?;
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Some(out)
}

fn parse_path(text: &str) -> Result<Vec<Step>, String> {
    let text = text
        .strip_prefix('$')
        .or_else(|| text.strip_prefix('@'))
        .unwrap_or(text);
    let chars: Vec<char> = text.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    let name_end = |mut j: usize| {
        while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        match chars[i] {
            '.' if chars.get(i + 1) == Some(&'.') => {
                let end = name_end(i + 2);
                let name: String = chars[i + 2..end].iter().collect();
                if name.is_empty() {
                    return Err("`..` must be followed by a name".into());
                }
                steps.push(Step::Descend(name));
                i = end;
            }
            '.' => {
                let end = name_end(i + 1);
                let name: String = chars[i + 1..end].iter().collect();
                match name.as_str() {
                    "" => {}
                    "*" => steps.push(Step::All),
                    _ => steps.push(Step::Field(name)),
                }
                i = end;
            }
            '[' => {
                let close =
                    matching_bracket(&chars, i).ok_or_else(|| format!("unclosed [ in {text:?}"))?;
                let inner: String = chars[i + 1..close].iter().collect();
                steps.push(bracket(inner.trim())?);
                i = close + 1;
            }
            _ => {
                let end = name_end(i);
                steps.push(Step::Field(chars[i..end].iter().collect()));
                i = end;
            }
        }
    }
    Ok(steps)
}

fn matching_bracket(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '[' => depth += 1,
            None if c == ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            None => {}
        }
    }
    None
}

fn bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::All);
    }
    if let Some(name) = quoted(inner) {
        return Ok(Step::Field(name));
    }
    if let Ok(index) = inner.parse::<i64>() {
        return Ok(Step::Index(index));
    }
    let filter = inner
        .strip_prefix("?(")
        .and_then(|f| f.strip_suffix(')'))
        .ok_or_else(|| format!("unsupported subscript [{inner}]"))?;
    let (path, op) = match filter.split_once("==") {
        Some((p, v)) => (p, Some((true, v))),
        None => match filter.split_once("!=") {
            Some((p, v)) => (p, Some((false, v))),
            None => (filter, None),
        },
    };
    let op = op.map(|(equal, v)| {
        let v = v.trim();
        let value = quoted(v).map_or_else(
            || serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned())),
            Value::String,
        );
        (equal, value)
    });
    Ok(Step::Filter {
        path: parse_path(path.trim())?,
        op,
    })
}

fn descend(value: &Value, name: &str, out: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            if let Some(found) = map.get(name) {
                out.push(found.clone());
            }
            for child in map.values() {
                descend(child, name, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                descend(item, name, out);
            }
        }
        _ => {}
    }
}

/// The values `path` selects from `root`.
fn select(path: &[Step], root: &Value) -> Vec<Value> {
    let mut current = vec![root.clone()];
    for step in path {
        let mut next = Vec::new();
        for value in &current {
            match step {
                Step::Field(name) => next.extend(value.get(name).cloned()),
                Step::Index(index) => {
                    if let Value::Array(items) = value {
                        let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
                        let at = if *index < 0 { len + index } else { *index };
                        if let Some(item) = usize::try_from(at).ok().and_then(|i| items.get(i)) {
                            next.push(item.clone());
                        }
                    }
                }
                Step::All => match value {
                    Value::Array(items) => next.extend(items.iter().cloned()),
                    Value::Object(map) => next.extend(map.values().cloned()),
                    _ => {}
                },
                Step::Descend(name) => descend(value, name, &mut next),
                Step::Filter { path, op } => {
                    let items: Vec<&Value> = match value {
                        Value::Array(items) => items.iter().collect(),
                        other => vec![other],
                    };
                    for item in items {
                        let found = select(path, item);
                        let keep = match op {
                            None => !found.is_empty(),
                            Some((equal, wanted)) => {
                                found.iter().any(|f| same(f, wanted)) == *equal
                            }
                        };
                        if keep {
                            next.push(item.clone());
                        }
                    }
                }
            }
        }
        current = next;
    }
    current
}

/// Equality that lets `"3"` match `3`, as a template author means it.
fn same(found: &Value, wanted: &Value) -> bool {
    found == wanted || text(found) == text(wanted)
}

/// How kubectl prints a selected value: strings bare, the rest as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn render_parts(parts: &[Part], root: &Value, out: &mut String) {
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Path(path) => {
                let values: Vec<String> = select(path, root).iter().map(text).collect();
                out.push_str(&values.join(" "));
            }
            Part::Range(path, body) => {
                for item in select(path, root) {
                    render_parts(body, &item, out);
                }
            }
        }
    }
}

/// One column of `-o custom-columns`.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomColumn {
    /// The header.
    pub header: String,
    /// The path, as a template.
    pub template: Template,
}

/// Parses `HEADER:PATH,HEADER:PATH`.
///
/// # Errors
/// A column without `:`, or a path that does not parse.
pub fn parse_custom_columns(spec: &str) -> Result<Vec<CustomColumn>, TemplateError> {
    spec.split(',')
        .filter(|c| !c.is_empty())
        .map(|column| {
            let (header, path) = column.split_once(':').ok_or_else(|| TemplateError {
                template: spec.to_owned(),
                reason: format!("expected HEADER:PATH, found {column:?}"),
            })?;
            Ok(CustomColumn {
                header: header.to_owned(),
                template: Template::parse(path)?,
            })
        })
        .collect()
}

/// A custom column's cell: the selected values joined by commas, or `<none>`.
pub fn custom_cell(column: &CustomColumn, object: &Value) -> String {
    let values = column.template.values(object);
    if values.is_empty() {
        "<none>".to_owned()
    } else {
        values.iter().map(text).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"containers": [{"name": "web", "image": "a:1"}, {"name": "log", "image": "b:2"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "False"}], "restarts": 3},
        })
    }

    fn render(template: &str, value: &Value) -> String {
        Template::parse(template).unwrap().render(value)
    }

    #[test]
    fn fields_indices_and_wildcards_select_values() {
        let p = pod();
        assert_eq!(render("{.metadata.name}", &p), "web-1");
        assert_eq!(render("{.spec.containers[1].image}", &p), "b:2");
        assert_eq!(render("{.spec.containers[-1].name}", &p), "log");
        assert_eq!(render("{.spec.containers[*].image}", &p), "a:1 b:2");
        assert_eq!(render("{.status.restarts}", &p), "3");
        assert_eq!(render(".metadata.name", &p), "web-1");
        assert_eq!(
            render("{.metadata.labels['app.kubernetes.io/name']}", &p),
            "web"
        );
        assert_eq!(render("{..image}", &p), "a:1 b:2");
    }

    #[test]
    fn filters_pick_the_matching_elements() {
        assert_eq!(
            render(r#"{.status.conditions[?(@.type=="Ready")].status}"#, &pod()),
            "True"
        );
        assert_eq!(
            render("{.status.conditions[?(@.status!='True')].type}", &pod()),
            "PodScheduled"
        );
    }

    #[test]
    fn range_repeats_its_body_for_each_item_and_literals_are_unescaped() {
        let list = json!({"items": [pod(), {"metadata": {"name": "web-2"}}]});
        assert_eq!(
            render(r#"{range .items[*]}{.metadata.name}{"\n"}{end}"#, &list),
            "web-1\nweb-2\n"
        );
        assert_eq!(render("name={.metadata.name}", &pod()), "name=web-1");
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert!(Template::parse("{.metadata.name").is_err());
        assert!(Template::parse("{range .items[*]}{.a}").is_err());
        assert!(Template::parse("{end}").is_err());
        assert!(Template::parse("{.a[?x]}").is_err());
    }

    #[test]
    fn custom_columns_join_several_values_and_show_none_for_missing_ones() {
        let columns = parse_custom_columns(
            "NAME:.metadata.name,IMAGES:.spec.containers[*].image,NODE:.spec.nodeName",
        )
        .unwrap();
        let p = pod();
        let cells: Vec<_> = columns.iter().map(|c| custom_cell(c, &p)).collect();
        assert_eq!(cells, ["web-1", "a:1,b:2", "<none>"]);
        assert!(parse_custom_columns("NAME").is_err());
    }
}
