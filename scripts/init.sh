#!/usr/bin/env bash
# Sets up a development environment for etl, safe to run again:
#   1. starts PostgreSQL with wal_level=logical (Docker Compose when a Docker engine answers,
#      otherwise a local cluster with this machine's PostgreSQL binaries), unless one already
#      answers at POSTGRES_HOST:POSTGRES_PORT;
#   2. runs the control-plane migrations (`etl migrate api`);
#   3. seeds the default replicator image;
#   4. creates a demo table and the publication `etl_demo` (SKIP_DEMO=1 to skip);
#   5. runs `etl k8s bootstrap` when a Kubernetes context is reachable.
#
# Variables (defaults in brackets):
#   POSTGRES_USER [postgres]  POSTGRES_PASSWORD [postgres]  POSTGRES_DB [postgres]
#   POSTGRES_PORT [5430]      POSTGRES_HOST [localhost]
#   SKIP_DOCKER               set: never use Docker (use a running server or a local cluster)
#   POSTGRES_DATA_VOLUME      data directory (local cluster) or volume/path (Docker) [.pgdata/dev]
#   REPLICATOR_IMAGE          default replicator image [ramsup/etl-replicator:latest]
#   SKIP_DEMO                 set: do not create the demo table and publication
#   ETL_BIN                   etl binary to use [built with `cargo build --release`, the build the
#                             README's `cargo run --release` then reuses]
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
. "$repo/scripts/lib.sh"

POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-postgres}"
POSTGRES_PORT="${POSTGRES_PORT:-5430}"
POSTGRES_HOST="${POSTGRES_HOST:-localhost}"
REPLICATOR_IMAGE="${REPLICATOR_IMAGE:-ramsup/etl-replicator:latest}"
export PGCONNECT_TIMEOUT=3
export PGOPTIONS='-c client_min_messages=warning'

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v psql >/dev/null || die "psql not found (apt-get install postgresql-client)"

admin_url="postgres://${POSTGRES_USER}:${POSTGRES_PASSWORD}@${POSTGRES_HOST}:${POSTGRES_PORT}/postgres"
db_url="postgres://${POSTGRES_USER}:${POSTGRES_PASSWORD}@${POSTGRES_HOST}:${POSTGRES_PORT}/${POSTGRES_DB}"

server_answers() { psql "$admin_url" -Atqc 'select 1' >/dev/null 2>&1; }

# 1. PostgreSQL
if server_answers; then
    say "PostgreSQL already answers on ${POSTGRES_HOST}:${POSTGRES_PORT}"
elif [ -z "${SKIP_DOCKER:-}" ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    say "starting PostgreSQL with Docker Compose on port ${POSTGRES_PORT}"
    POSTGRES_USER="$POSTGRES_USER" POSTGRES_PASSWORD="$POSTGRES_PASSWORD" POSTGRES_DB="$POSTGRES_DB" \
        POSTGRES_PORT="$POSTGRES_PORT" POSTGRES_DATA_VOLUME="${POSTGRES_DATA_VOLUME:-etl-postgres-data}" \
        docker compose -f "$repo/scripts/docker-compose.yaml" up -d --wait
else
    case "$POSTGRES_HOST" in
        localhost|127.0.0.1) ;;
        *) die "PostgreSQL does not answer on ${POSTGRES_HOST}:${POSTGRES_PORT}, and a local cluster can only be started on localhost" ;;
    esac
    [ -n "${SKIP_DOCKER:-}" ] || say "no Docker engine answers: using this machine's PostgreSQL binaries"
    data="${POSTGRES_DATA_VOLUME:-$repo/.pgdata/dev}"
    say "starting a local PostgreSQL cluster in $data on port ${POSTGRES_PORT}"
    start_local_cluster "$data" "$POSTGRES_PORT" "$POSTGRES_USER" "$POSTGRES_PASSWORD" "$data.log" \
        || die "the local cluster did not start; see $data.log"
fi

say "waiting for PostgreSQL"
for _ in $(seq 1 60); do
    server_answers && break
    sleep 1
done
server_answers || die "PostgreSQL did not become ready on ${POSTGRES_HOST}:${POSTGRES_PORT}"
wal_level="$(psql "$admin_url" -Atqc 'show wal_level')"
[ "$wal_level" = logical ] || die "wal_level is '$wal_level' on ${POSTGRES_HOST}:${POSTGRES_PORT}; set wal_level=logical and restart PostgreSQL"

if [ "$(psql "$admin_url" -Atqc "select count(*) from pg_database where datname = '${POSTGRES_DB//\'/\'\'}'")" = 0 ]; then
    say "creating database ${POSTGRES_DB}"
    psql "$admin_url" -qc "create database \"${POSTGRES_DB//\"/\"\"}\""
fi

# 2. migrations
if [ -z "${ETL_BIN:-}" ]; then
    # Release, like the README's `cargo run --release`, so a fresh clone builds once.
    say "building etl (release)"
    (cd "$repo" && cargo build --release --quiet)
    ETL_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/etl"
fi
say "running the api migrations"
"$ETL_BIN" migrate api --database-url "$db_url"

# 3. default replicator image
say "seeding the default replicator image ${REPLICATOR_IMAGE}"
psql "$db_url" -v ON_ERROR_STOP=1 -qv image="$REPLICATOR_IMAGE" <<'SQL'
begin;
update app.images set is_default = false where is_default and name <> :'image';
insert into app.images (name, is_default) values (:'image', true)
    on conflict (name) do update set is_default = true, updated_at = now();
commit;
SQL

# 4. demo table and publication
if [ -z "${SKIP_DEMO:-}" ]; then
    say "creating the demo table public.demo_orders and publication etl_demo"
    psql "$db_url" -v ON_ERROR_STOP=1 -q <<'SQL'
create table if not exists public.demo_orders (
    id bigint generated always as identity primary key,
    customer text not null,
    amount numeric(12, 2) not null,
    created_at timestamptz not null default now()
);
insert into public.demo_orders (customer, amount)
select 'customer ' || g, g * 10.5 from generate_series(1, 5) g
where not exists (select 1 from public.demo_orders);
do $$ begin
    if not exists (select 1 from pg_publication where pubname = 'etl_demo') then
        create publication etl_demo for table public.demo_orders;
    end if;
end $$;
SQL
fi

# 5. Kubernetes
if command -v kubectl >/dev/null && kubectl cluster-info --request-timeout=3s >/dev/null 2>&1; then
    if "$ETL_BIN" k8s --help >/dev/null 2>&1; then
        say "bootstrapping Kubernetes resources in context $(kubectl config current-context)"
        "$ETL_BIN" k8s bootstrap
    else
        say "this etl build has no Kubernetes support; skipping the bootstrap"
    fi
else
    say "no reachable Kubernetes context: skipping 'etl k8s bootstrap' (the replicator runs without Kubernetes)"
fi

say "ready: ${db_url//:${POSTGRES_PASSWORD}@/:***@}"
