//! Benchmark figures: rows of (case, system, metric, value, unit), printed as a table with
//! Skiff beside its peers, and written as JSON for scripts to compare runs.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, Result};
use serde::Serialize;

/// The system every ratio is computed for.
pub const SKIFF: &str = "skiff";

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub case: String,
    pub system: String,
    pub metric: String,
    pub value: f64,
    pub unit: String,
}

/// Every figure of one benchmark run.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    pub fn add(&mut self, case: &str, system: &str, metric: &str, value: f64, unit: &str) {
        self.rows.push(Row {
            case: case.into(),
            system: system.into(),
            metric: metric.into(),
            value,
            unit: unit.into(),
        });
    }

    /// Prints one line per (case, metric) with every system's value, then Skiff's ratio to
    /// each peer measured in the same run.
    pub fn print(&self) {
        let mut grouped: BTreeMap<(&str, &str), Vec<&Row>> = BTreeMap::new();
        for row in &self.rows {
            grouped
                .entry((&row.case, &row.metric))
                .or_default()
                .push(row);
        }
        // Columns as wide as their longest entry.
        let width = |f: fn(&Row) -> &str, title: &str| {
            self.rows
                .iter()
                .map(|r| f(r).len())
                .chain([title.len()])
                .max()
                .unwrap_or_default()
        };
        let (cw, mw, sw) = (
            width(|r| &r.case, "case"),
            width(|r| &r.metric, "metric"),
            width(|r| &r.system, "system"),
        );
        println!(
            "{:<cw$} {:<mw$} {:<sw$} {:>14} {:<10} {:>12}",
            "case", "metric", "system", "value", "unit", "skiff/peer"
        );
        for ((case, metric), rows) in grouped {
            let skiff = rows.iter().find(|r| r.system == SKIFF).map(|r| r.value);
            for row in rows {
                let ratio = match skiff {
                    Some(s) if row.system != SKIFF && row.value != 0.0 => {
                        format!("{:.3}", s / row.value)
                    }
                    _ => String::new(),
                };
                // Ratios need their third decimal; rates and times do not.
                let precision = if row.unit == "ratio" { 3 } else { 1 };
                println!(
                    "{case:<cw$} {metric:<mw$} {:<sw$} {:>14.precision$} {:<10} {ratio:>12}",
                    row.system, row.value, row.unit
                );
            }
        }
    }

    /// Writes the rows as a JSON array to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.rows)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
    }
}

/// The median of `samples` (which must not be empty).
pub fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
