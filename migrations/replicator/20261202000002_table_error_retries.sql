-- Automatic retries of errored tables (issue 18, `pipeline.table_errors`). Every state row
-- carries the retry bookkeeping of its table: `attempts` counts the errors since the table was
-- last `ready` (reset to 0 by `ready` and by an operator's resync or rollback), `last_error` is
-- the reason of the latest of them (kept while the table is copied again), and an `errored` row
-- with retries left has `next_attempt_at`, when the replicator sends it back to `init`.
alter table etl.replication_state
    add column attempts integer not null default 0,
    add column last_error text,
    add column next_attempt_at timestamptz;

create index replication_state_due_retries
    on etl.replication_state (pipeline_id, next_attempt_at)
    where is_current and state = 'errored' and next_attempt_at is not null;
