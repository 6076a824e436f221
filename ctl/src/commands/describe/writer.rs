//! The layout of `describe` output: `Key:  value` lines nested by two spaces a level,
//! aligned the way Go's tabwriter aligns kubectl's (a column is as wide as the widest cell
//! in its run of consecutive lines, plus two spaces).

use std::fmt::Display;

/// Spaces after the widest cell of a column.
const PADDING: usize = 2;

/// Collects lines, then aligns them.
#[derive(Debug, Default)]
pub struct Writer {
    /// Each line's cells; the last is the line's trailing text, never padded.
    lines: Vec<Vec<String>>,
}

fn indent(level: usize) -> String {
    "  ".repeat(level)
}

impl Writer {
    /// A new, empty description.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Key:  value` at `level`.
    pub fn field(&mut self, level: usize, key: &str, value: impl Display) {
        self.lines
            .push(vec![format!("{}{key}:", indent(level)), value.to_string()]);
    }

    /// `Key:  value`, or `Key:  <none>` when the value is empty.
    pub fn field_or_none(&mut self, level: usize, key: &str, value: &str) {
        self.field(level, key, if value.is_empty() { "<none>" } else { value });
    }

    /// A section title, `Key:` with what follows nested under it.
    pub fn section(&mut self, level: usize, key: &str) {
        self.lines.push(vec![format!("{}{key}:", indent(level))]);
    }

    /// A line of text at `level`.
    pub fn text(&mut self, level: usize, text: impl Display) {
        self.lines.push(vec![format!("{}{text}", indent(level))]);
    }

    /// An empty line.
    pub fn blank(&mut self) {
        self.lines.push(vec![String::new()]);
    }

    /// A row of aligned cells at `level` (a table inside the description).
    pub fn row<S: Into<String>>(&mut self, level: usize, cells: impl IntoIterator<Item = S>) {
        let mut cells: Vec<String> = cells.into_iter().map(Into::into).collect();
        if let Some(first) = cells.first_mut() {
            first.insert_str(0, &indent(level));
        }
        self.lines.push(cells);
    }

    /// `Key:  first`, then each further value on its own line under the first (labels,
    /// annotations); `<none>` when there are none.
    pub fn multiline(&mut self, level: usize, key: &str, values: &[String]) {
        match values.split_first() {
            None => self.field(level, key, "<none>"),
            Some((first, rest)) => {
                self.field(level, key, first);
                for value in rest {
                    self.lines.push(vec![String::new(), value.clone()]);
                }
            }
        }
    }

    /// The aligned text.
    pub fn render(&self) -> String {
        let mut widths = vec![Vec::new(); self.lines.len()];
        layout(
            &self.lines,
            0,
            self.lines.len(),
            &mut Vec::new(),
            &mut widths,
        );
        let mut out = String::new();
        for (line, widths) in self.lines.iter().zip(&widths) {
            let last = line.len().saturating_sub(1);
            for (i, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if i < last {
                    let width = widths.get(i).copied().unwrap_or(0);
                    let pad = width.saturating_sub(cell.chars().count());
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Go's tabwriter column blocks: column `widths.len()` of consecutive lines that have a
/// cell there is as wide as its widest cell plus padding; recursion handles the next
/// columns within each block.
fn layout(
    lines: &[Vec<String>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    out: &mut [Vec<usize>],
) {
    let column = widths.len();
    let cells = |line: usize| lines[line].len().saturating_sub(1);
    let mut this = line0;
    while this < line1 {
        if column >= cells(this) {
            this += 1;
            continue;
        }
        for slot in &mut out[line0..this] {
            slot.clone_from(widths);
        }
        line0 = this;
        let mut width = 0;
        while this < line1 && column < cells(this) {
            width = width.max(lines[this][column].chars().count() + PADDING);
            this += 1;
        }
        widths.push(width);
        layout(lines, line0, this, widths, out);
        widths.pop();
        line0 = this;
    }
    for slot in &mut out[line0..line1] {
        slot.clone_from(widths);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_consecutive_fields_line_up() {
        let mut w = Writer::new();
        w.field(0, "Name", "web");
        w.field(0, "Namespace", "default");
        w.multiline(0, "Labels", &["app=web".into(), "tier=front".into()]);
        assert_eq!(
            w.render(),
            "Name:       web\nNamespace:  default\nLabels:     app=web\n            tier=front\n"
        );
    }

    #[test]
    fn a_section_title_starts_a_new_alignment_block() {
        let mut w = Writer::new();
        w.field(0, "Name", "web");
        w.section(0, "Containers");
        w.section(1, "web");
        w.field(2, "Image", "nginx");
        w.field(2, "Restart Count", "0");
        assert_eq!(
            w.render(),
            "Name:  web\nContainers:\n  web:\n    Image:          nginx\n    Restart Count:  0\n"
        );
    }

    #[test]
    fn rows_form_an_aligned_table() {
        let mut w = Writer::new();
        w.row(1, ["Type", "Status"]);
        w.row(1, ["PodScheduled", "True"]);
        assert_eq!(w.render(), "  Type          Status\n  PodScheduled  True\n");
    }
}
