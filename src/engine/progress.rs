//! Progress bars for the initial copy: one line per table with rows copied / estimated rows and
//! rows per second, drawn on stderr only when stderr is a terminal (hidden in logs, pods and
//! pipes, where the per-table log lines say the same).
//!
//! [`TableProgress::inc`] is an atomic add plus a rate-limited redraw, so callers can report every
//! COPY chunk.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::base::schema::TableName;

/// With an estimate: `public.orders [#####-----]  1200000/2000000 rows  450000/s`.
const BAR_TEMPLATE: &str =
    "{prefix:30!} [{bar:30}] {human_pos:>11}/{human_len:11} rows {per_sec:>12} {msg}";
/// Without one: `public.orders  1200000 rows  450000/s`.
const COUNT_TEMPLATE: &str = "{prefix:30!} {human_pos:>11} rows {per_sec:>12} {msg}";

/// The set of per-table bars of one initial copy. Cheap to clone.
#[derive(Clone)]
pub struct CopyProgress {
    bars: MultiProgress,
}

impl Default for CopyProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyProgress {
    /// Drawn on stderr when stderr is a terminal, hidden otherwise.
    pub fn new() -> Self {
        if std::io::stderr().is_terminal() {
            Self::with_target(ProgressDrawTarget::stderr())
        } else {
            Self::hidden()
        }
    }

    /// Never drawn (tests, `--quiet`-like modes).
    pub fn hidden() -> Self {
        Self::with_target(ProgressDrawTarget::hidden())
    }

    fn with_target(target: ProgressDrawTarget) -> Self {
        CopyProgress {
            bars: MultiProgress::with_draw_target(target),
        }
    }

    pub fn is_hidden(&self) -> bool {
        self.bars.is_hidden()
    }

    /// A bar for `table`; `estimated_rows` (e.g. `pg_class.reltuples`) gives it a length.
    pub fn table(&self, table: &TableName, estimated_rows: Option<u64>) -> TableProgress {
        let (bar, template) = match estimated_rows {
            Some(rows) => (ProgressBar::new(rows), BAR_TEMPLATE),
            None => (ProgressBar::no_length(), COUNT_TEMPLATE),
        };
        // The templates are constants covered by the tests below, so the fallback never shows.
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#>-");
        let bar = self
            .bars
            .add(bar.with_style(style).with_prefix(table.to_string()));
        TableProgress { bar }
    }
}

/// The bar of one table.
#[derive(Clone)]
pub struct TableProgress {
    bar: ProgressBar,
}

impl TableProgress {
    /// `rows` more rows were copied.
    pub fn inc(&self, rows: u64) {
        self.bar.inc(rows);
    }

    /// Rows counted so far.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// The copy of this table is complete: the bar shows the real row count and stays.
    pub fn finish(&self) {
        let rows = self.bar.position();
        if self.bar.length().is_some() {
            self.bar.set_length(rows);
        }
        self.bar.finish_with_message("done");
    }

    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        for template in [BAR_TEMPLATE, COUNT_TEMPLATE] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn a_hidden_bar_still_counts_rows() {
        let progress = CopyProgress::hidden();
        let table = progress.table(&TableName::new("public", "orders"), Some(10));
        table.inc(4);
        table.inc(8);
        assert!(table.is_hidden());
        assert_eq!(table.position(), 12);
        table.finish();
        assert_eq!(table.position(), 12);
    }
}
