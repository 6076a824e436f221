//! Aligned columns as kubectl prints them: each column as wide as its widest cell plus
//! three spaces (at least six), the last column unpadded.
//!
//! A [`Table`] remembers its column widths once rendered, so the rows `get --watch` prints
//! later line up with the table printed first (kubectl's tabwriter does the same).

/// kubectl's tabwriter: at least this many columns per cell, padding included.
const MIN_WIDTH: usize = 6;
/// Spaces after the widest cell of a column.
const PADDING: usize = 3;

/// Rows of cells under a header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Column titles (`NAME`, `READY`, ...).
    pub headers: Vec<String>,
    /// One vector of cells per object, as many as there are headers.
    pub rows: Vec<Vec<String>>,
    /// Widths from earlier renders; a column never gets narrower.
    widths: Vec<usize>,
}

impl Table {
    /// An empty table with these headers.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Self {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
            widths: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Makes `column` wide enough for `chars` characters from the start, so that rows
    /// printed later (a watch's `MODIFIED` after `ADDED`) need not widen it.
    pub fn reserve(&mut self, column: usize, chars: usize) {
        if self.widths.len() <= column {
            self.widths.resize(column + 1, 0);
        }
        self.widths[column] = self.widths[column].max((chars + PADDING).max(MIN_WIDTH));
    }

    /// Renders the rows (after the headers unless `no_headers`), one line each, and
    /// remembers the widths for later [`Table::render_rows`] calls. Rows are consumed.
    pub fn render(&mut self, no_headers: bool) -> String {
        let mut lines: Vec<Vec<String>> = Vec::new();
        if !no_headers {
            lines.push(self.headers.clone());
        }
        lines.append(&mut self.rows);
        self.render_lines(&lines)
    }

    /// Renders the rows without headers, keeping the widths of earlier renders; consumes
    /// the rows.
    pub fn render_rows(&mut self) -> String {
        let lines = std::mem::take(&mut self.rows);
        self.render_lines(&lines)
    }

    fn render_lines(&mut self, lines: &[Vec<String>]) -> String {
        let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
        self.widths.resize(self.widths.len().max(columns), 0);
        for line in lines {
            for (i, cell) in line.iter().enumerate() {
                let width = (cell.chars().count() + PADDING).max(MIN_WIDTH);
                self.widths[i] = self.widths[i].max(width);
            }
        }
        let mut out = String::new();
        for line in lines {
            for (i, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if i + 1 < line.len() {
                    let pad = self.widths[i] - cell.chars().count();
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_plus_three_spaces() {
        let mut table = Table::new(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
        table.push(row(&["dnsutils", "1/1", "Running", "0", "2m27s"]));
        assert_eq!(
            table.render(false),
            "NAME       READY   STATUS    RESTARTS   AGE\n\
             dnsutils   1/1     Running   0          2m27s\n"
        );
    }

    #[test]
    fn narrow_columns_are_still_six_wide_and_the_last_is_not_padded() {
        let mut table = Table::new(["A", "B"]);
        table.push(row(&["x", "y"]));
        assert_eq!(table.render(true), "x     y\n");
    }

    #[test]
    fn rows_rendered_later_keep_the_widths_of_the_first_render() {
        let mut table = Table::new(["NAME", "AGE"]);
        table.push(row(&["a-long-name", "1s"]));
        table.render(false);
        table.push(row(&["b", "2s"]));
        assert_eq!(table.render_rows(), "b             2s\n");
    }

    #[test]
    fn a_reserved_column_is_wide_from_the_first_row() {
        let mut table = Table::new(["EVENT", "NAME"]);
        table.reserve(0, "MODIFIED".len());
        table.push(row(&["ADDED", "web"]));
        assert_eq!(table.render(true), "ADDED      web\n");
    }
}
