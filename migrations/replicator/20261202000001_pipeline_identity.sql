-- Which destination a pipeline's state on this source serves (issue 19). The replicator writes
-- the same identity into the destination beside its positions, and on every start compares the
-- two: a state and slot serve exactly one destination. One row per pipeline; `etl pipeline
-- reset` (or the control plane's reset and delete) removes it with the rest of the state.
create table etl.pipeline_identities (
    pipeline_id bigint primary key,
    -- random, new whenever the pipeline starts from nothing
    token text not null,
    -- the source as the replicator saw it: system identifier and database name
    source text not null,
    -- the destination's kind and location, never a secret (`sqlite /var/lib/etl/shop.db`)
    destination text not null,
    created_at timestamptz not null default now()
);
