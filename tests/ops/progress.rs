//! The copy progress bars are drawn only on a terminal.

use std::io::IsTerminal;

use etl::base::schema::TableName;
use etl::engine::progress::CopyProgress;

#[test]
fn progress_bars_are_hidden_unless_stderr_is_a_terminal() {
    let progress = CopyProgress::new();
    let table = progress.table(&TableName::new("public", "orders"), None);
    table.inc(3);
    table.finish();
    assert_eq!(progress.is_hidden(), !std::io::stderr().is_terminal());
    assert_eq!(table.is_hidden(), !std::io::stderr().is_terminal());
    assert_eq!(table.position(), 3);
}
