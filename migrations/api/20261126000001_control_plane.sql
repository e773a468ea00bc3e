-- Control-plane schema `app`: tenants and the objects they own.
-- Secrets inside `config` columns are stored encrypted (see the API's encryption module):
-- a secret field holds {"key_id": n, "nonce": base64, "ciphertext": base64}, never plain text.

create table app.tenants (
    id text primary key,
    name text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- Replicator container images; exactly one is the default used for new pipelines.
create table app.images (
    id bigint generated always as identity primary key,
    name text not null unique,
    is_default boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create unique index images_one_default on app.images (is_default) where is_default;

-- A source database replicated from.
create table app.sources (
    id bigint generated always as identity primary key,
    tenant_id text not null references app.tenants (id) on delete cascade,
    name text not null,
    config jsonb not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (tenant_id, name)
);
create index sources_tenant on app.sources (tenant_id);

-- A destination replicated into; `config` holds the destination kind and its settings.
create table app.destinations (
    id bigint generated always as identity primary key,
    tenant_id text not null references app.tenants (id) on delete cascade,
    name text not null,
    config jsonb not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (tenant_id, name)
);
create index destinations_tenant on app.destinations (tenant_id);

-- The deployed process (pod or local child) that runs a pipeline, and the image it runs.
create table app.replicators (
    id bigint generated always as identity primary key,
    tenant_id text not null references app.tenants (id) on delete cascade,
    image_id bigint not null references app.images (id),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index replicators_tenant on app.replicators (tenant_id);

-- A pipeline: one source publication into one destination, run by one replicator.
create table app.pipelines (
    id bigint generated always as identity primary key,
    tenant_id text not null references app.tenants (id) on delete cascade,
    source_id bigint not null references app.sources (id),
    destination_id bigint not null references app.destinations (id),
    replicator_id bigint not null references app.replicators (id),
    publication_name text not null,
    -- batch settings, worker counts, resource overrides, log level
    config jsonb not null default '{}',
    -- what the user asked for last (start/stop), so a restarted API can reconcile
    desired_state text not null default 'stopped' check (desired_state in ('stopped', 'started')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (tenant_id, source_id, destination_id, publication_name)
);
create index pipelines_tenant on app.pipelines (tenant_id);
create index pipelines_source on app.pipelines (source_id);
create index pipelines_destination on app.pipelines (destination_id);
