//! `get --watch`: print the current objects, then one line (or document) per change until
//! Ctrl-C. Rows keep the column widths of the first table, as kubectl's do.
//!
//! The watch starts at the list's resourceVersion, so no change between the two is lost;
//! a dropped stream resumes from the last version seen, and an expired one lists again.

use futures::StreamExt;
use jiff::Timestamp;
use serde_json::{Value, json};
use skiff_api::{
    client::{EventType, WatchParams},
    resources::ResourceType,
    status::Reason,
};

use super::{GetArgs, nothing_found};
use crate::{
    columns::{self, TableOptions},
    error::CtlError,
    printers::{self, OutputFormat, Table, name::qualified_name},
    session::Session,
    target::Targets,
};

/// How long to wait before reopening a watch the server closed.
const RECONNECT_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// What a watch prints: a table that remembers its widths, or documents.
struct WatchPrinter {
    resource: &'static ResourceType,
    format: OutputFormat,
    options: TableOptions,
    with_events: bool,
    no_headers: bool,
    table: Table,
    header_printed: bool,
    documents_printed: usize,
}

impl WatchPrinter {
    fn new(resource: &'static ResourceType, args: &GetArgs, options: TableOptions) -> Self {
        let format = args.output.clone().unwrap_or_default();
        let mut headers = match &format {
            OutputFormat::CustomColumns(custom) => {
                custom.iter().map(|c| c.header.clone()).collect()
            }
            _ => columns::headers(resource, &options),
        };
        if args.output_watch_events {
            headers.insert(0, "EVENT".to_owned());
        }
        let mut table = Table::new(headers);
        if args.output_watch_events {
            table.reserve(0, "MODIFIED".len());
        }
        Self {
            resource,
            format,
            options,
            with_events: args.output_watch_events,
            no_headers: args.no_headers,
            table,
            header_printed: false,
            documents_printed: 0,
        }
    }

    /// Renders objects, each with the event that brought it.
    fn render(&mut self, events: &[(EventType, Value)]) -> String {
        let now = Timestamp::now();
        self.options.now = now;
        match &self.format {
            OutputFormat::Table | OutputFormat::Wide | OutputFormat::CustomColumns(_) => {
                for (event, object) in events {
                    let mut row = match &self.format {
                        OutputFormat::CustomColumns(custom) => custom
                            .iter()
                            .map(|c| printers::jsonpath::custom_cell(c, object))
                            .collect(),
                        _ => columns::row(self.resource, object, &self.options),
                    };
                    if self.with_events {
                        row.insert(0, event_name(*event).to_owned());
                    }
                    self.table.push(row);
                }
                if self.header_printed {
                    self.table.render_rows()
                } else {
                    self.header_printed = true;
                    self.table.render(self.no_headers)
                }
            }
            OutputFormat::Name => events
                .iter()
                .map(|(event, object)| {
                    let name = object
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let line = qualified_name(self.resource, name);
                    if self.with_events {
                        format!("{} {line}\n", event_name(*event))
                    } else {
                        line + "\n"
                    }
                })
                .collect(),
            OutputFormat::Yaml | OutputFormat::Json | OutputFormat::JsonPath(_) => {
                let mut out = String::new();
                for (event, object) in events {
                    let value = if self.with_events {
                        json!({"type": event_name(*event), "object": object})
                    } else {
                        object.clone()
                    };
                    if self.format == OutputFormat::Yaml && self.documents_printed > 0 {
                        out.push_str("---\n");
                    }
                    out.push_str(&printers::render_value(&self.format, &value));
                    self.documents_printed += 1;
                }
                out
            }
        }
    }
}

/// The name kubectl gives a watch event.
pub fn event_name(event: EventType) -> &'static str {
    match event {
        EventType::Added => "ADDED",
        EventType::Modified => "MODIFIED",
        EventType::Deleted => "DELETED",
        EventType::Bookmark => "BOOKMARK",
    }
}

/// Runs `get --watch` / `--watch-only`.
///
/// # Errors
/// Several types or names, an unreachable server, or a server error.
pub async fn run(session: &Session, args: &GetArgs, targets: &Targets) -> Result<(), CtlError> {
    let [target] = targets.targets.as_slice() else {
        return Err(CtlError::usage(
            "you may only specify a single resource type",
        ));
    };
    if target.names.len() > 1 {
        return Err(CtlError::usage(
            "watch is only supported on individual resources and resource collections, \
             but several names were given",
        ));
    }
    let resource = target.resource;
    let namespace = session.scope(resource, args.all_namespaces);
    let label_selector = args.selector.clone().unwrap_or_default();
    let field_selector = match (target.names.first(), &args.field_selector) {
        (Some(name), Some(fields)) => format!("metadata.name={name},{fields}"),
        (Some(name), None) => format!("metadata.name={name}"),
        (None, fields) => fields.clone().unwrap_or_default(),
    };
    let options = args.table_options(false, Timestamp::now());
    let mut printer = WatchPrinter::new(resource, args, options);

    let (items, mut resource_version) = session
        .list(resource, &namespace, &label_selector, &field_selector)
        .await?;
    if !args.watch_only {
        if items.is_empty() {
            if target.names.is_empty() {
                let scope =
                    (resource.namespaced() && !args.all_namespaces).then_some(session.namespace());
                eprintln!("{}", nothing_found(scope));
            } else {
                return Err(CtlError::Server(skiff_api::status::ApiError::not_found(
                    &resource.group_resource(),
                    &target.names[0],
                )));
            }
        } else {
            let added: Vec<_> = items.into_iter().map(|o| (EventType::Added, o)).collect();
            printers::write_stdout(&printer.render(&added));
        }
    }

    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let params = WatchParams {
            label_selector: label_selector.clone(),
            field_selector: field_selector.clone(),
            resource_version: resource_version.clone(),
            allow_bookmarks: true,
        };
        let mut stream = tokio::select! {
            _ = &mut interrupted => return Ok(()),
            stream = session.client().watch(resource.plural, &namespace, &params) => {
                stream.map_err(|e| session.fail(e))?
            }
        };
        loop {
            let next = tokio::select! {
                _ = &mut interrupted => return Ok(()),
                next = stream.next() => next,
            };
            match next {
                // The server closed the stream: resume where it stopped, after a pause
                // so a server that keeps closing it is not hammered.
                None => {
                    tokio::select! {
                        _ = &mut interrupted => return Ok(()),
                        () = tokio::time::sleep(RECONNECT_PAUSE) => break,
                    }
                }
                Some(Ok(event)) => {
                    if !event.resource_version.is_empty() {
                        resource_version = event.resource_version.clone();
                    }
                    if event.event_type != EventType::Bookmark {
                        printers::write_stdout(
                            &printer.render(&[(event.event_type, event.object)]),
                        );
                    }
                }
                Some(Err(e)) if e.is(Reason::Expired) => {
                    // History is gone: list again and go on from there.
                    let (_, version) = session
                        .list(resource, &namespace, &label_selector, &field_selector)
                        .await?;
                    resource_version = version;
                    break;
                }
                Some(Err(e)) => return Err(session.fail(e)),
            }
        }
    }
}
