//! The names of a pipeline's replication slots on its source: one permanent slot for the apply
//! worker, one temporary slot per table being copied. The engine creates them, the control
//! plane reports and drops them, cleanup finds them by these names.

use crate::base::schema::TableId;

/// The slot of a pipeline's apply worker.
pub fn apply_slot_name(pipeline_id: u64) -> String {
    format!("etl_apply_{pipeline_id}")
}

/// The slot of a table-sync worker.
pub fn sync_slot_name(pipeline_id: u64, table: TableId) -> String {
    format!("etl_sync_{pipeline_id}_{}", table.0)
}

/// A `LIKE` pattern matching every table-sync slot of a pipeline.
pub fn sync_slot_pattern(pipeline_id: u64) -> String {
    format!("etl\\_sync\\_{pipeline_id}\\_%")
}
