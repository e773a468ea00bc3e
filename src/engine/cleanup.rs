//! [`delete_pipeline_state`]: everything a pipeline leaves on its source (replication slots and
//! `etl` rows, identity included) removed, for the control plane's pipeline delete and reset and
//! `etl pipeline reset`.

use sqlx::PgPool;

use super::error::Error;
use super::state::slots::{apply_slot_name, sync_slot_pattern};

/// Drops the pipeline's slots (`etl_apply_{id}`, `etl_sync_{id}_*`), terminating a session
/// still streaming from one, and deletes its rows from every `etl` table. Idempotent.
pub async fn delete_pipeline_state(pool: &PgPool, pipeline_id: u64) -> Result<(), Error> {
    let apply = apply_slot_name(pipeline_id);
    let sync = sync_slot_pattern(pipeline_id);
    let slots: Vec<String> = sqlx::query_scalar(
        "select slot_name::text from pg_replication_slots \
         where slot_name = $1 or slot_name like $2",
    )
    .bind(&apply)
    .bind(&sync)
    .fetch_all(pool)
    .await
    .map_err(Error::query("listing the pipeline's slots"))?;
    for slot in slots {
        // A replicator still running reconnects after its walsender is terminated: terminate
        // again until the drop wins.
        let mut attempts = 0;
        loop {
            sqlx::query(
                "select pg_terminate_backend(active_pid) from pg_replication_slots \
                 where slot_name = $1 and active_pid is not null",
            )
            .bind(&slot)
            .execute(pool)
            .await
            .map_err(Error::query("terminating a walsender"))?;
            let result = sqlx::query(
                "select pg_drop_replication_slot(slot_name) from pg_replication_slots \
                 where slot_name = $1",
            )
            .bind(&slot)
            .execute(pool)
            .await;
            match result {
                Ok(_) => break,
                Err(e) if attempts < 100 && is_slot_active(&e) => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => return Err(Error::query("dropping a slot")(e)),
            }
        }
    }
    let has_schema: Option<i32> =
        sqlx::query_scalar("select 1 from pg_namespace where nspname = 'etl'")
            .fetch_optional(pool)
            .await
            .map_err(Error::query("looking for the etl schema"))?;
    if has_schema.is_none() {
        return Ok(());
    }
    let id = pipeline_id as i64;
    for sql in [
        "delete from etl.replication_state where pipeline_id = $1",
        "delete from etl.table_schemas where pipeline_id = $1",
        "delete from etl.table_mappings where pipeline_id = $1",
        "delete from etl.replication_progress where pipeline_id = $1",
    ] {
        sqlx::query(sql)
            .bind(id)
            .execute(pool)
            .await
            .map_err(Error::query("deleting the pipeline's state"))?;
    }
    // The table exists only once the identity migration ran.
    let has_identities: bool =
        sqlx::query_scalar("select to_regclass('etl.pipeline_identities') is not null")
            .fetch_one(pool)
            .await
            .map_err(Error::query("looking for etl.pipeline_identities"))?;
    if has_identities {
        sqlx::query("delete from etl.pipeline_identities where pipeline_id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map_err(Error::query("deleting the pipeline's identity"))?;
    }
    Ok(())
}

fn is_slot_active(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "55006")
}
