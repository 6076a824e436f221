//! The events table: `LAST SEEN TYPE REASON OBJECT MESSAGE` (no NAME column), with the
//! timestamps of old-style (count, first/last timestamp) and new-style (series, eventTime)
//! events read the way kubectl reads them.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;

use super::RowContext;
use crate::age;

/// Event columns (the whole row: events have no NAME column).
pub fn headers(wide: bool) -> Vec<&'static str> {
    if wide {
        vec![
            "LAST SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "SUBOBJECT",
            "SOURCE",
            "MESSAGE",
            "FIRST SEEN",
            "COUNT",
            "NAME",
        ]
    } else {
        vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    }
}

/// Event cells (the whole row).
pub fn row(event: &Event, ctx: &RowContext) -> Vec<String> {
    let last_seen = age::since(last_seen(event), ctx.now);
    let kind = event
        .involved_object
        .kind
        .as_deref()
        .unwrap_or_default()
        .to_lowercase();
    let object = match event.involved_object.name.as_deref() {
        Some(name) if !name.is_empty() => format!("{kind}/{name}"),
        _ => kind,
    };
    let message = event
        .message
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    if ctx.wide {
        vec![
            last_seen,
            text(&event.type_),
            text(&event.reason),
            object,
            text(&event.involved_object.field_path),
            source(event),
            message,
            age::since(first_seen(event), ctx.now),
            count(event).to_string(),
            text(&event.metadata.name),
        ]
    } else {
        vec![
            last_seen,
            text(&event.type_),
            text(&event.reason),
            object,
            message,
        ]
    }
}

/// When the event was first seen: firstTimestamp, else eventTime.
pub fn first_seen(event: &Event) -> Option<Timestamp> {
    event
        .first_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// When the event was last seen: the series' last observation, else lastTimestamp, else
/// when it was first seen.
pub fn last_seen(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| first_seen(event))
}

/// How many times it happened (1 for a singleton of the new API).
pub fn count(event: &Event) -> i32 {
    match &event.series {
        Some(series) => series.count.unwrap_or(1),
        None => event.count.filter(|c| *c > 0).unwrap_or(1),
    }
}

/// The component that reported it, and the host when known: `kubelet, node-1`.
pub fn source(event: &Event) -> String {
    let source = event.source.clone().unwrap_or_default();
    let component = source
        .component
        .filter(|c| !c.is_empty())
        .or_else(|| event.reporting_component.clone())
        .unwrap_or_default();
    let host = source
        .host
        .filter(|h| !h.is_empty())
        .or_else(|| event.reporting_instance.clone())
        .unwrap_or_default();
    match (component.is_empty(), host.is_empty()) {
        (true, _) => "<unknown>".to_owned(),
        (false, true) => component,
        (false, false) => format!("{component}, {host}"),
    }
}
