-- Lag history: `etl serve-api` samples every pipeline's apply slot on its source every
-- `api.lag_history.sample_interval_seconds` and keeps `api.lag_history.retention_hours` of it,
-- so the console's charts and the WAL forecast survive a restart of the control plane.
-- Positions are WAL byte offsets (`pg_lsn - '0/0'`); a null means the slot did not exist.
create table app.lag_samples (
    pipeline_id bigint not null references app.pipelines (id) on delete cascade,
    sampled_at timestamptz not null default now(),
    -- the source server's current WAL position
    wal_lsn bigint not null,
    -- the slot's confirmed_flush_lsn and restart_lsn
    confirmed_lsn bigint,
    restart_lsn bigint,
    -- wal_lsn - confirmed_lsn (never negative)
    lag_bytes bigint,
    -- how long ago the WAL at confirmed_lsn was written, interpolated between samples
    lag_seconds double precision,
    -- pg_replication_slots.safe_wal_size and wal_status
    safe_wal_size bigint,
    wal_status text,
    -- max_slot_wal_keep_size in bytes; null when it is -1 (not bounded)
    wal_keep_limit bigint,
    -- the pipeline's tables by state, e.g. {"ready": 12, "errored": 1}
    tables jsonb not null default '{}',
    primary key (pipeline_id, sampled_at)
);
create index lag_samples_sampled_at on app.lag_samples (sampled_at);
