-- Replicator state schema `etl`, kept on the source database next to the data it describes.
-- Every row is scoped by `pipeline_id`, so several pipelines can share one source.

-- Table states: one current row per pipeline and table, older rows kept for rollback.
-- state: init | data_sync | finished_copy | sync_done | ready | errored
create table etl.replication_state (
    id bigint generated always as identity primary key,
    pipeline_id bigint not null,
    table_id oid not null,
    state text not null
        check (state in ('init', 'data_sync', 'finished_copy', 'sync_done', 'ready', 'errored')),
    -- the LSN of `sync_done`: changes committed after it are applied by the apply worker
    sync_done_lsn pg_lsn,
    -- for `errored`: {"reason": …, "hint": …, "retry": {"policy": "no_retry|manual|timed", …}}
    error jsonb,
    -- the row this one replaced, so a rollback can restore it
    prev_id bigint references etl.replication_state (id) on delete set null,
    is_current boolean not null default true,
    created_at timestamptz not null default now(),
    check ((state = 'sync_done') = (sync_done_lsn is not null) or state = 'ready'),
    check ((state = 'errored') = (error is not null))
);
create unique index replication_state_current
    on etl.replication_state (pipeline_id, table_id) where is_current;

-- The schema of each replicated table as last seen (from the copy snapshot or a Relation
-- message), so the engine and destinations agree on columns after a restart.
create table etl.table_schemas (
    id bigint generated always as identity primary key,
    pipeline_id bigint not null,
    table_id oid not null,
    schema_name text not null,
    table_name text not null,
    -- `d` default, `f` full, `i` index, `n` nothing
    replica_identity "char" not null default 'd',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (pipeline_id, table_id)
);

create table etl.table_columns (
    table_schema_id bigint not null references etl.table_schemas (id) on delete cascade,
    -- 1-based position among the replicated columns
    position integer not null,
    name text not null,
    type_oid oid not null,
    type_modifier integer not null default -1,
    nullable boolean not null default true,
    -- 1-based position in the primary key (or replica identity index), null if not a key column
    primary_key_position integer,
    primary key (table_schema_id, position)
);

-- Which destination object a source table is written to.
create table etl.table_mappings (
    pipeline_id bigint not null,
    source_table_id oid not null,
    destination_table_id text not null,
    created_at timestamptz not null default now(),
    primary key (pipeline_id, source_table_id)
);

-- The apply worker's durable position: the end of the last commit the destination reported
-- durable. Only ever moves forward; a restart resumes from max(this, slot confirmed_flush_lsn).
create table etl.replication_progress (
    pipeline_id bigint primary key,
    confirmed_flush_lsn pg_lsn not null,
    updated_at timestamptz not null default now()
);
