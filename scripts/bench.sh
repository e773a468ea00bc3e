#!/usr/bin/env bash
# Benchmark of `etl replicate` against the limits of the same PostgreSQL cluster, in one run
# (the README's Performance section explains each figure). It starts its own cluster, loads the data, builds the
# release binary and prints every figure with its ratio to the limit measured alongside:
#
#   initial copy   rows/s of etl into the destination  vs  psql "COPY … TO STDOUT" > /dev/null
#                  (one connection), for pgbench_accounts and a ~20-column mixed-type table;
#                  for sqlite and postgres also  vs  the same rows piped by psql straight into the
#                  destination (`sqlite3 .import`, `COPY … FROM STDIN`): its own write limit
#   backlog drain  changes/s from SIGCONT until the slot confirms the last commit of a backlog
#                  committed while etl was SIGSTOPped  vs  pg_recvlogical --endpos on the same
#                  backlog, and the server's own decoding (pg_logical_slot_peek_binary_changes)
#   live lag       seconds from the last commit of the same workload, while etl streams, until
#                  the slot confirms it  vs  the 0.3 s target
#   big txn        peak RSS (VmHWM) of etl while one big transaction streams through  vs  the
#                  256 MiB target; its rows/s  vs  pg_recvlogical on the same transaction
#   mixed          (only with --only mixed) the lag of small transactions committed every 20 ms
#                  while one big transaction runs and after it commits, with pgoutput protocol 1
#                  (`streaming: off`) beside protocol 2 (`streaming: auto`)
#   verify         rows/s of `etl verify` comparing pgbench_accounts with its copy in the
#                  destination (sqlite or postgres; a running replicator)  vs  psql
#                  "COPY … TO STDOUT" > /dev/null of the same table (only with --only verify)
#
# usage: scripts/bench.sh [--quick] [--destination discard]
#                         [--only copy,drain,live,big,mixed,verify]
#                         [--destinations discard,sqlite,postgres [--repeat N]]
#                         [--keep] [--no-build] [--perf] [--unix] [--out FILE]
#   --quick        a tenth of the sizes (a smoke run of a couple of minutes)
#   --destination  where etl writes; each kind has a function `destination_<kind>` below
#                  (discard; sqlite: a file in the work directory; postgres: a fresh database
#                  on the bench cluster; iceberg: its SQL catalog in a fresh database of the
#                  bench cluster, the warehouse in the work directory (iceberg_mirror: the
#                  same with `mode: mirror`); nats, kafka: a fresh
#                  server per run from scripts/nats-server.sh / kafka-server.sh — for kafka set
#                  ETL_KAFKA_OPT_LEVEL=1 ETL_KAFKA_TOOLS=/var/tmp/etl-kafka-o1, or the debug
#                  build of the test broker is what gets measured)
#   --destinations compare destinations on the same data: runs the parts (default copy,drain)
#                  for each in turn and ends with a table of each figure as a ratio to the
#                  first destination (discard) of the same round and to the physical limit
#   --repeat N     with --destinations: N rounds (the spread is shown; for a loaded machine)
#   --only         run only these parts (the cluster and data are always prepared)
#   --keep         leave the cluster running (and reuse a kept one next time: data loads once)
#   --no-build     use the existing target/release/etl
#   --perf         record `perf` (all processes, call graphs) while etl copies, drains the
#                  backlog and streams the big transaction: $ETL_BENCH_DIR/perf-<phase>.data
#   --unix         etl and pg_recvlogical reach the cluster over its Unix-domain socket
#                  (/tmp) instead of TCP on 127.0.0.1: shows what the walsender's TCP sends cost
#   --out FILE     also write the result table to FILE
# ETL_BENCH_KAFKA_PROPERTIES adds librdkafka properties to the kafka destination, e.g.
# "{linger.ms: '100'}".
# ETL_BENCH_DIR moves the work directory (default /tmp/etl-bench); ETL_BIN runs another etl
# binary (no build), e.g. to compare two versions on the same data; ETL_BENCH_PIPELINE adds one
# `key: value` line to the pipeline section (e.g. `read_low_water_bytes: 0`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
. "$here/lib.sh"

quick=0 destination=discard destinations="" rounds=1 only="" keep=0 build=1 use_perf=0 out=""
source_host=127.0.0.1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --destination) destination="${2:?--destination needs a value}"; shift ;;
        --destinations) destinations="${2:?--destinations needs a list}"; shift ;;
        --repeat) rounds="${2:?--repeat needs a count}"; shift ;;
        --only) only="${2:?--only needs a value}"; shift ;;
        --keep) keep=1 ;;
        --no-build) build=0 ;;
        --perf) use_perf=1 ;;
        --unix) source_host=/tmp ;; # the cluster's unix_socket_directories (scripts/lib.sh)
        --out) out="${2:?--out needs a file}"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ -z "$only" ]; then
    if [ -n "$destinations" ]; then only="copy,drain"; else only="copy,drain,live,big"; fi
fi
case "$rounds" in ''|*[!0-9]*|0) echo "error: --repeat needs a positive count" >&2; exit 2 ;; esac

if [ "$quick" = 1 ]; then
    scale=5 mixed_rows=100000 inserts=100000 updates=20000 deletes=10000 big_rows=500000
else
    scale=50 mixed_rows=1000000 inserts=1000000 updates=200000 deletes=100000 big_rows=5000000
fi
accounts_rows=$((scale * 100000))
changes=$((inserts + updates + deletes))
timeout_s=900

work="${ETL_BENCH_DIR:-/tmp/etl-bench}"
mkdir -p "$work"
chmod 755 "$work"
results="$work/results.txt"
: > "$results"

# ---------------------------------------------------------------- destinations
# Each prints the YAML body of `destination:` for the run named $1 (its directory $work/$1 is
# new and empty), after preparing an empty target; the cluster is running by then.
destination_discard() { echo "discard: {}"; }
destination_sqlite() { echo "sqlite: {path: $work/$1/etl.db}"; }
# nats: a fresh nats-server (scripts/nats-server.sh, JetStream on disk in $work/nats) per run,
# so one run's stream does not fill the disk of the next.
destination_nats() {
    ETL_NATS_DIR="$work/nats" "$here/nats-server.sh" stop >/dev/null 2>&1 || true
    local url
    url="$(ETL_NATS_DIR="$work/nats" "$here/nats-server.sh" start)"
    echo "nats: {url: '$url', subject_prefix: bench, stream: BENCH}"
}
# kafka: a fresh broker (scripts/kafka-server.sh: tansu, data in memory) per run.
destination_kafka() {
    ETL_KAFKA_DIR="$work/kafka" "$here/kafka-server.sh" stop >/dev/null 2>&1 || true
    local address
    address="$(ETL_KAFKA_DIR="$work/kafka" "$here/kafka-server.sh" start)"
    echo "kafka: {brokers: ['$address'], topic_prefix: bench${ETL_BENCH_KAFKA_PROPERTIES:+, properties: $ETL_BENCH_KAFKA_PROPERTIES}}"
}
destination_postgres() {
    local db="dest_${1//[^a-zA-Z0-9]/_}"
    PGDATABASE=postgres sql "drop database if exists $db with (force)"
    PGDATABASE=postgres sql "create database $db"
    echo "postgres: {host: 127.0.0.1, port: $port, name: $db, username: postgres, password: bench, tls: {mode: disable}}"
}
destination_iceberg() { # the SQL catalog in a fresh database of the bench cluster
    local db="lake_${1//[^a-zA-Z0-9]/_}"
    PGDATABASE=postgres sql "drop database if exists $db with (force)"
    PGDATABASE=postgres sql "create database $db"
    echo "iceberg: {catalog: {sql: {host: 127.0.0.1, port: $port, name: $db, username: postgres, password: bench, tls: {mode: disable}}}, warehouse: 'file://$work/$1/lake', namespace: bench}"
}
# The same in mirror mode (tables that read as the source's rows: position deletes).
destination_iceberg_mirror() {
    destination_iceberg "$1" | sed 's/namespace: bench}$/namespace: bench, mode: mirror}/'
}

# The destination's own write limit for the initial copy, where one can be measured: after etl's
# copy of table $2 in run $1, the same rows piped by psql straight into the destination's copy
# of the table (emptied first); prints the seconds. Its label is in target_limit_label_<kind>.
target_limit_label_postgres="psql COPY TO | COPY FROM (target)"
target_limit_postgres() {
    local db="dest_${1//[^a-zA-Z0-9]/_}" start
    PGDATABASE="$db" sql "truncate public.$2"
    start="$(now)"
    psql -X -q -c "copy $2 to stdout" | PGDATABASE="$db" psql -X -q -v ON_ERROR_STOP=1 -c "copy public.$2 from stdin"
    calc "$(now) - $start" 3
}
# sqlite3's own .import (one transaction, no escapes decoded) into an empty table of the same
# shape in the same file.
target_limit_label_sqlite="psql COPY TO | sqlite3 .import"
target_limit_sqlite() {
    local file="$work/$1/etl.db" start
    sqlite3 "$file" "select replace(sql, '\"public.$2\"', 'etl_bench_import') from sqlite_master
                     where name = 'public.$2'" | sqlite3 "$file"
    start="$(now)"
    psql -X -q -c "copy $2 to stdout" |
        sqlite3 "$file" -cmd '.mode ascii' -cmd '.separator "\t" "\n"' '.import /dev/stdin etl_bench_import'
    calc "$(now) - $start" 3
    sqlite3 "$file" "drop table etl_bench_import"
}

# A plain Parquet write of the same rows (pyarrow, zstd, one file), from psql's CSV.
target_limit_label_iceberg="psql COPY TO | pyarrow Parquet write"
target_limit_iceberg() {
    local python start
    python="$("$repo/scripts/pyiceberg.sh")"
    start="$(now)"
    psql -X -q -c "copy $2 to stdout (format csv)" | "$python" -c '
import sys, pyarrow.csv as csv, pyarrow.parquet as pq
table = csv.read_csv(sys.stdin.buffer, read_options=csv.ReadOptions(autogenerate_column_names=True))
pq.write_table(table, sys.argv[1], compression="zstd")' "$work/$1/plain.parquet"
    calc "$(now) - $start" 3
}
target_limit_label_iceberg_mirror="$target_limit_label_iceberg"
target_limit_iceberg_mirror() { target_limit_iceberg "$@"; }

known_destination() {
    declare -F "destination_$1" >/dev/null && return 0
    echo "error: destination $1 is not supported (known: $(declare -F | sed -n 's/^declare -f destination_//p' | tr '\n' ' '))" >&2
    return 2
}
destination_yaml() { "destination_$destination" "$1"; }
known_destination "$destination" || exit 2
IFS=, read -r -a compared <<< "$destinations"
for kind in "${compared[@]}"; do known_destination "$kind" || exit 2; done

# ---------------------------------------------------------------- helpers
log() { printf '==> %s\n' "$*" >&2; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
wants() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# 1-minute load average (other work on the cores skews every figure: see it next to them).
load1() { cut -d' ' -f1 /proc/loadavg; }

record() { # label value limit-label limit-value ratio target [load]
    printf '%-34s %14s   %-34s %14s   %7s   %-7s %s\n' "$1" "$2" "$3" "$4" "$5" "$6" "${7:-}" |
        sed 's/ *$//' | tee -a "$results"
}

sql() { psql -X -q -A -t -v ON_ERROR_STOP=1 -c "$1"; }

# With --perf: records every process into $work/perf-$perf_tag$1.data until perf_stop.
perf_pid="" perf_tag=""
perf_start() {
    [ "$use_perf" = 1 ] || return 0
    perf record -g -a -F 499 -o "$work/perf-$perf_tag$1.data" > "$work/perf-$perf_tag$1.log" 2>&1 &
    perf_pid=$!
    sleep 0.5   # perf needs a moment before it samples
}
perf_stop() {
    [ -n "$perf_pid" ] || return 0
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf_pid=""
}

# ---------------------------------------------------------------- cluster
if [ -f "$work/port" ] && as_pg_owner "$(pg_bindir)/pg_ctl" -D "$work/data" status >/dev/null 2>&1; then
    port="$(cat "$work/port")"
else
    rm -rf "$work/data"
    port="$(free_port)"
    echo "$port" > "$work/port"
    log "starting a PostgreSQL cluster in $work/data on port $port"
    PG_FSYNC=off start_local_cluster "$work/data" "$port" postgres bench "$work/postgres.log"
fi
export PGHOST=127.0.0.1 PGPORT="$port" PGUSER=postgres PGPASSWORD=bench PGDATABASE=bench
export PGOPTIONS="-c client_min_messages=warning"

etl_pids=()
cleanup() {
    perf_stop
    if [ -d "$work/nats" ]; then ETL_NATS_DIR="$work/nats" "$here/nats-server.sh" stop || true; fi
    if [ -d "$work/kafka" ]; then ETL_KAFKA_DIR="$work/kafka" "$here/kafka-server.sh" stop || true; fi
    for pid in "${etl_pids[@]}"; do
        kill -CONT "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
    done
    if [ "$keep" = 0 ]; then
        stop_local_cluster "$work/data"
        rm -rf "$work/data" "$work/port"
    fi
}
trap cleanup EXIT

# A sender blocked on a SIGSTOPped client must not time it out during the backlog.
PGDATABASE=postgres sql "alter system set wal_sender_timeout = '10min'"
PGDATABASE=postgres sql "select pg_reload_conf()" >/dev/null

# ---------------------------------------------------------------- data
loaded="$(PGDATABASE=postgres sql "select 1 from pg_database where datname = 'bench'")"
if [ "$loaded" != 1 ] || [ "$(sql "select count(*) from pgbench_accounts")" != "$accounts_rows" ] ||
   [ "$(sql "select count(*) from bench_mixed")" != "$mixed_rows" ]; then
    log "loading $accounts_rows pgbench_accounts rows and $mixed_rows mixed-type rows"
    PGDATABASE=postgres sql "drop database if exists bench with (force)"
    PGDATABASE=postgres sql "create database bench"
    pgbench -i -q -s "$scale" >/dev/null 2>&1
    psql -X -q -v ON_ERROR_STOP=1 -v rows="$mixed_rows" <<'SQL'
create table bench_mixed (
    id bigint primary key, i2 smallint, i4 integer, i8 bigint, num numeric(14, 4), f4 real,
    f8 double precision, flag boolean, name text, code varchar(32), tag char(8), day date,
    ts timestamp, tstz timestamptz, uid uuid, doc jsonb, raw bytea, addr inet, span interval,
    tags integer[]);
insert into bench_mixed
select g, (g % 32767)::int2, g::int4, g::int8 * 1000003, (g * 1.2345)::numeric(14, 4), g / 7.0,
       g / 13.0, g % 2 = 0, 'name ' || md5(g::text), left(md5(g::text), 20),
       left(md5((g + 1)::text), 8), date '2000-01-01' + (g % 9000),
       timestamp '2020-01-01' + g * interval '1 second',
       timestamptz '2020-01-01 00:00+00' + g * interval '1 minute', md5(g::text)::uuid,
       jsonb_build_object('id', g, 'tag', md5(g::text)), decode(md5(g::text), 'hex'),
       ('10.' || (g % 256) || '.' || (g / 256 % 256) || '.1')::inet,
       make_interval(secs => g % 100000), array[g, g + 1, g + 2]::int[]
from generate_series(1, :rows) g;
vacuum analyze bench_mixed;
SQL
fi
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
create table if not exists bench_changes (id bigint primary key, v integer, pad text);
create table if not exists bench_big (id bigint primary key, v integer, pad text);
-- The mixed part: small transactions (bench_small) committed every 20 ms while one big
-- transaction (bench_big) runs and after it commits; when each committed (bench_small_log) and
-- the slot's confirmed position every 10 ms (bench_confirm_log). The logs are unlogged tables
-- in no publication.
create table if not exists bench_small (id bigint primary key, payload text);
create unlogged table if not exists bench_small_log (id bigint, committed_at float8, lsn pg_lsn);
create unlogged table if not exists bench_confirm_log (at float8, lsn pg_lsn);
create unlogged table if not exists bench_mixed_stop (stop bool);
create or replace procedure bench_small_writer() language plpgsql as $$
declare i bigint := 1;
begin
    loop
        exit when exists (select from bench_mixed_stop);
        insert into bench_small values (i, 'small');
        commit;
        insert into bench_small_log
        values (i, extract(epoch from clock_timestamp()), pg_current_wal_insert_lsn());
        commit;
        i := i + 1;
        perform pg_sleep(0.02);
    end loop;
end $$;
create or replace procedure bench_confirm_poller(slot text, timeout_s float8)
language plpgsql as $$
declare
    started float8 := extract(epoch from clock_timestamp());
    confirmed pg_lsn;
begin
    loop
        select confirmed_flush_lsn into confirmed from pg_replication_slots where slot_name = slot;
        insert into bench_confirm_log values (extract(epoch from clock_timestamp()), confirmed);
        commit;
        exit when exists (select from bench_mixed_stop)
              and confirmed >= (select max(lsn) from bench_small_log);
        exit when extract(epoch from clock_timestamp()) - started > timeout_s;
        perform pg_sleep(0.01);
    end loop;
end $$;

-- 100 single-row changes per transaction: inserts, then updates, then deletes.
create or replace procedure bench_workload(base bigint, inserts int, updates int, deletes int)
language plpgsql as $$
declare b int;
begin
    b := 0;
    while b < inserts loop
        insert into bench_changes
        select base + g, 0, repeat('p', 60) from generate_series(b + 1, least(b + 100, inserts)) g;
        commit;
        b := b + 100;
    end loop;
    b := 0;
    while b < updates loop
        update bench_changes set v = v + 1
        where id > base + b and id <= base + least(b + 100, updates);
        commit;
        b := b + 100;
    end loop;
    b := 0;
    while b < deletes loop
        delete from bench_changes
        where id > base + inserts - deletes + b and id <= base + inserts - deletes + least(b + 100, deletes);
        commit;
        b := b + 100;
    end loop;
end $$;

-- Epoch seconds at which `slot` confirmed `target` (polled every 2 ms), or null after timeout.
create or replace function bench_wait_confirmed(slot text, target pg_lsn, timeout_s float8)
returns float8 language plpgsql as $$
declare deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_s);
begin
    loop
        if exists (select 1 from pg_replication_slots
                   where slot_name = slot and confirmed_flush_lsn >= target) then
            return extract(epoch from clock_timestamp());
        end if;
        if clock_timestamp() > deadline then
            return null;
        end if;
        perform pg_sleep(0.002);
    end loop;
end $$;

-- Epoch seconds at which the walsender of slot `slot` had sent WAL up to `target` (its client
-- need not confirm: pg_recvlogical confirms only every few seconds), or null after timeout.
create or replace function bench_wait_sent(slot text, target pg_lsn, timeout_s float8)
returns float8 language plpgsql as $$
declare deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_s);
begin
    loop
        if exists (select 1 from pg_replication_slots s join pg_stat_replication r
                   on r.pid = s.active_pid where s.slot_name = slot and r.sent_lsn >= target) then
            return extract(epoch from clock_timestamp());
        end if;
        if clock_timestamp() > deadline then
            return null;
        end if;
        perform pg_sleep(0.002);
    end loop;
end $$;

-- Epoch seconds at which a client was streaming from slot `slot`, or null after timeout.
create or replace function bench_wait_active(slot text, timeout_s float8)
returns float8 language plpgsql as $$
declare deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_s);
begin
    loop
        if exists (select 1 from pg_replication_slots where slot_name = slot and active) then
            return extract(epoch from clock_timestamp());
        end if;
        if clock_timestamp() > deadline then
            return null;
        end if;
        perform pg_sleep(0.01);
    end loop;
end $$;

-- Epoch seconds at which table `tab` of pipeline `pipeline` was in one of `states` (polled every
-- 10 ms; etl creates its schema when it starts), or null after timeout.
create or replace function bench_wait_state(pipeline bigint, tab regclass, states text[], timeout_s float8)
returns float8 language plpgsql as $$
declare
    deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_s);
    reached boolean;
begin
    loop
        -- A catalog query, not to_regclass(): the syscache of this one long statement would
        -- not notice the schema etl creates meanwhile.
        if exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                   where n.nspname = 'etl' and c.relname = 'replication_state') then
            execute 'select exists (select 1 from etl.replication_state where pipeline_id = $1
                     and table_id = $2 and is_current and state = any ($3))'
                into reached using pipeline, tab, states;
            if reached then
                return extract(epoch from clock_timestamp());
            end if;
        end if;
        if clock_timestamp() > deadline then
            return null;
        end if;
        perform pg_sleep(0.01);
    end loop;
end $$;
SQL
# Slots left by an interrupted run pin WAL: every slot of this private cluster is ours.
sql "select pg_drop_replication_slot(slot_name) from pg_replication_slots where not active" >/dev/null
for pub in pub_accounts:pgbench_accounts pub_mixed:bench_mixed pub_changes:bench_changes pub_big:bench_big \
           pub_big_small:bench_big,bench_small; do
    if [ "$(sql "select count(*) from pg_publication where pubname = '${pub%%:*}'")" = 0 ]; then
        sql "create publication ${pub%%:*} for table ${pub#*:}"
    fi
done

# ---------------------------------------------------------------- etl
etl="${ETL_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/etl}"
if [ "$build" = 1 ] && [ -z "${ETL_BIN:-}" ]; then
    log "cargo build --release"
    (cd "$repo" && cargo build --release --quiet)
fi
[ -x "$etl" ] || { echo "error: $etl not found (build it or drop --no-build)" >&2; exit 1; }
# The state schema exists before any waiter reads it: a waiter's query holds its lock on
# etl.replication_state while it polls, which would block a migration the replicator runs at
# start-up on a fresh cluster.
"$etl" migrate replicator --config-dir "$repo/config" \
    --database-url "postgres://postgres:bench@127.0.0.1:$port/bench" >/dev/null

# The name of pipeline $1's apply slot.
apply_slot() { echo "etl_apply_$1"; }

# Starts `etl replicate` for pipeline id $1 on publication $2; sets $etl_pid.
start_etl() {
    local id="$1" publication="$2" dir="$work/etl-$1"
    rm -rf "$dir"
    mkdir -p "$dir"
    cat > "$dir/base.yaml" <<YAML
pipeline:
  id: $id
  publication_name: $publication
  pg_connection:
    host: $source_host
    port: $port
    name: bench
    username: postgres
    password: bench
    tls: {mode: disable}
  metrics_address: 127.0.0.1:$(free_port)
${ETL_BENCH_PIPELINE:+  $ETL_BENCH_PIPELINE}
destination:
  $(destination_yaml "etl-$id")
YAML
    : > "$dir/dev.yaml"
    RUST_LOG="${RUST_LOG:-info}" "$etl" --config-dir "$dir" --env dev replicate > "$dir/etl.log" 2>&1 &
    etl_pid=$!
    etl_pids+=("$etl_pid")
}

stop_etl() {
    kill -CONT "$1" 2>/dev/null || true
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

fail_etl() {
    echo "error: $1; last lines of $work/etl-$2/etl.log:" >&2
    tail -20 "$work/etl-$2/etl.log" >&2
    exit 1
}

# Runs the query $1 (which waits on the server and prints an epoch or nothing on timeout) while
# watching that etl (pipeline $3, process $etl_pid) stays alive; prints the epoch. $2 says what
# is awaited, for errors.
wait_query() {
    local query="$1" what="$2" id="$3" pid="${wait_pid:-$etl_pid}" tmp="$work/wait.out"
    sql "$query" > "$tmp" &
    local waiter=$!
    while kill -0 "$waiter" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            kill "$waiter" 2>/dev/null || true
            fail_etl "etl exited before $what" "$id"
        fi
        sleep 0.05
    done
    wait "$waiter"
    local at
    at="$(cat "$tmp")"
    [ -n "$at" ] || fail_etl "no $what within ${timeout_s}s" "$id"
    echo "$at"
}

# Waits until table $2 of pipeline $1 is in one of the states $3 (a SQL array literal).
wait_state() {
    wait_query "select bench_wait_state($1, '$2', '$3', $timeout_s)" "$2 in states $3" "$1" >/dev/null
}

# Epoch seconds at which slot $1's confirmed_flush_lsn passed $2 (etl pipeline $3).
wait_confirmed() {
    wait_query "select bench_wait_confirmed('$1', '$2', $timeout_s)" "$1 confirming $2" "$3"
}

# Epoch seconds at which slot $1's walsender had sent WAL up to $2 (60 s at most).
wait_sent() {
    wait_query "select bench_wait_sent('$1', '$2', 60)" "$1 sending $2" ""
}

# Runs the change workload at id offset $1; prints "commit_lsn commit_epoch".
run_workload() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 \
        -c "call bench_workload($1, $inserts, $updates, $deletes)" \
        -c "select pg_current_wal_insert_lsn() || ' ' || extract(epoch from clock_timestamp())"
}

recvlogical() { # slot publication endpos
    pg_recvlogical -h "$source_host" -d bench -S "$1" --start -E "$3" --no-loop -f /dev/null \
        -o proto_version=1 -o publication_names="$2"
}

# CPU seconds (user + system) process $1 has used so far.
cpu_secs() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }

# pg_recvlogical from slot $1 (publication $2) to $3; prints "wall_s walsender_cpu_s" (the
# sender's CPU is sampled every 50 ms, so up to 50 ms of it may be missed).
recvlogical_measured() {
    local start pid sender="" cpu=0
    start="$(now)"
    recvlogical "$@" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        [ -n "$sender" ] || sender="$(sql "select active_pid from pg_replication_slots where slot_name = '$1'")"
        [ -z "$sender" ] || cpu="$(cpu_secs "$sender" 2>/dev/null || echo "$cpu")"
        sleep 0.05
    done
    wait "$pid"
    echo "$(calc "$(now) - $start" 3) $cpu"
}

create_slot() {
    sql "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = '$1'" >/dev/null
    sql "select pg_create_logical_replication_slot('$1', 'pgoutput')" >/dev/null
}
# Drops slot $1, waiting (up to 10 s) for a client that just exited to release it.
drop_slot() {
    local tries=0
    until sql "select pg_drop_replication_slot('$1')" >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt 100 ] || { echo "error: cannot drop slot $1" >&2; return 1; }
        sleep 0.1
    done
}

pipeline=$(( $(date +%s) % 100000 * 10 ))
header() {
    record "measure ($destination)" "etl" "limit" "value" "ratio" "target" "load"
}

# With --destinations: figure $1 of the current round and destination was $2 against the
# limit $3, under load $4 (kept for the comparison table).
declare -A kept_value kept_limit kept_load kept_target
round=0
keep() {
    kept_value["$round:$destination:$1"]="$2"
    kept_limit["$round:$destination:$1"]="$3"
    kept_load["$round:$destination:$1"]="$4"
}

# ---------------------------------------------------------------- initial copy
bench_copy() {
    for pair in pgbench_accounts:pub_accounts:$accounts_rows bench_mixed:pub_mixed:$mixed_rows; do
        IFS=: read -r table publication rows <<< "$pair"
        sql "select count(*) from $table" >/dev/null   # warm the cache for both readers
        log "copy $table: psql COPY TO STDOUT"
        start="$(now)"
        psql -X -q -c "copy $table to stdout" > /dev/null
        psql_secs="$(calc "$(now) - $start" 3)"
        psql_rate="$(calc "$rows / $psql_secs" 0)"

        pipeline=$((pipeline + 1))
        log "copy $table: etl replicate (pipeline $pipeline)"
        perf_start "copy-$table"
        start="$(now)"
        start_etl "$pipeline" "$publication"
        wait_state "$pipeline" "$table" "{finished_copy,sync_done,ready}"
        wall_secs="$(calc "$(now) - $start" 3)"
        perf_stop
        # The copy phase itself: from `data_sync` to `finished_copy` in the state history.
        copy_secs="$(sql "select extract(epoch from max(created_at) filter (where state = 'finished_copy')
                                            - max(created_at) filter (where state = 'data_sync'))
                          from etl.replication_state where pipeline_id = $pipeline
                          and table_id = '$table'::regclass")"
        [ -n "$copy_secs" ] || copy_secs="$wall_secs"
        # etl's CPU for the whole run (start-up included): less sensitive to other load than
        # its wall time.
        copy_cpu="$(cpu_secs "$etl_pid")"
        stop_etl "$etl_pid"
        sql "select pg_drop_replication_slot(slot_name) from pg_replication_slots
             where slot_name like 'etl%' and not active" >/dev/null
        etl_rate="$(calc "$rows / $copy_secs" 0)"
        load="$(load1)"
        record "copy $table rows/s" "$etl_rate" "psql COPY TO STDOUT rows/s" "$psql_rate" \
            "$(calc "$etl_rate / $psql_rate")" ">= 1.3" "$load"
        record "  (wall from start, s)" "$wall_secs" "(psql, s)" "$psql_secs" "" ""
        record "  CPU us/row: etl" "$(calc "$copy_cpu * 1000000 / $rows")" "" "" "" ""
        keep "copy $table rows/s" "$etl_rate" "$psql_rate" "$load"
        if declare -F "target_limit_$destination" >/dev/null; then
            local label="target_limit_label_$destination" target_secs target_rate
            log "copy $table: ${!label}"
            target_secs="$("target_limit_$destination" "etl-$pipeline" "$table")"
            target_rate="$(calc "$rows / $target_secs" 0)"
            record "" "" "${!label} rows/s" "$target_rate" "$(calc "$etl_rate / $target_rate")" \
                "" "$(load1)"
            kept_target["$round:$destination:copy $table rows/s"]="$target_rate"
        fi
    done
}

# ---------------------------------------------------------------- backlog drain and live lag
bench_changes() {
    pipeline=$((pipeline + 1))
    sql "truncate bench_changes"
    log "changes: etl replicate (pipeline $pipeline) on bench_changes"
    start_etl "$pipeline" pub_changes
    changes_pid="$etl_pid"
    wait_state "$pipeline" bench_changes "{ready}"
    slot="$(apply_slot "$pipeline")"
    [ "$(sql "select count(*) from pg_replication_slots where slot_name = '$slot'")" = 1 ] ||
        fail_etl "no apply slot named $slot" "$pipeline"
    base=0

    if wants drain; then
        create_slot bench_recv
        create_slot bench_peek
        log "drain: $changes changes committed while etl is stopped"
        kill -STOP "$changes_pid"
        read -r lsn _ <<< "$(run_workload "$base")"
        base=$((base + inserts + 1))
        sender_pid="$(sql "select active_pid from pg_replication_slots where slot_name = '$slot'")"
        etl_cpu0="$(cpu_secs "$changes_pid")"
        sender_cpu0="$(cpu_secs "$sender_pid")"
        perf_start drain
        start="$(now)"
        kill -CONT "$changes_pid"
        done_at="$(wait_confirmed "$slot" "$lsn" "$pipeline")"
        etl_secs="$(calc "$done_at - $start" 3)"
        etl_cpu="$(calc "$(cpu_secs "$changes_pid") - $etl_cpu0")"
        sender_cpu="$(calc "$(cpu_secs "$sender_pid") - $sender_cpu0")"
        perf_stop
        load="$(load1)"

        log "drain: pg_recvlogical --endpos $lsn"
        read -r recv_secs recv_sender_cpu <<< "$(recvlogical_measured bench_recv pub_changes "$lsn")"

        log "drain: pg_logical_slot_peek_binary_changes"
        start="$(now)"
        messages="$(sql "select count(*) from pg_logical_slot_peek_binary_changes('bench_peek', '$lsn', null,
                         'proto_version', '1', 'publication_names', 'pub_changes')")"
        peek_secs="$(calc "$(now) - $start" 3)"
        # The same with `binary 'true'` (PG 14+): what the server saves when it sends values in
        # binary instead of through the types' text output functions.
        start="$(now)"
        sql "select count(*) from pg_logical_slot_peek_binary_changes('bench_peek', '$lsn', null,
             'proto_version', '1', 'publication_names', 'pub_changes', 'binary', 'true')" >/dev/null
        peek_binary_secs="$(calc "$(now) - $start" 3)"
        drop_slot bench_recv
        drop_slot bench_peek
        [ "$messages" -ge "$changes" ] || { echo "error: server decoded $messages < $changes messages" >&2; exit 1; }

        etl_rate="$(calc "$changes / $etl_secs" 0)"
        recv_rate="$(calc "$changes / $recv_secs" 0)"
        peek_rate="$(calc "$changes / $peek_secs" 0)"
        record "drain changes/s" "$etl_rate" "pg_recvlogical --endpos changes/s" "$recv_rate" \
            "$(calc "$etl_rate / $recv_rate")" ">= 3" "$load"
        keep "drain changes/s" "$etl_rate" "$recv_rate" "$load"
        record "" "" "server decoding (peek) changes/s" "$peek_rate" \
            "$(calc "$etl_rate / $peek_rate")" ""
        # No client of one slot drains faster than its walsender decodes: the most any client
        # could reach, as a multiple of pg_recvlogical (the 3x target needs this above 3).
        record "" "" "  peek ÷ pg_recvlogical (any client's ceiling)" \
            "$(calc "$peek_rate / $recv_rate")" "" ""
        record "" "" "server decoding, binary values" "$(calc "$changes / $peek_binary_secs" 0)" \
            "$(calc "$peek_secs / $peek_binary_secs")" ""
        record "  (wall, s)" "$etl_secs" "(pg_recvlogical wall, s)" "$recv_secs" "" ""
        record "  (CPU s: etl)" "$etl_cpu" "(CPU s: etl's walsender)" "$sender_cpu" "" ""
        record "" "" "(CPU s: pg_recvlogical's walsender)" "$recv_sender_cpu" "" ""
        # Per change, in microseconds: what each process spends (the walsender's share depends
        # on how its client reads).
        record "  CPU us/change: etl" "$(calc "$etl_cpu * 1000000 / $changes")" \
            "target" "2" "$(calc "$etl_cpu * 1000000 / $changes / 2")" "<= 1"
        record "  CPU us/change: etl's walsender" "$(calc "$sender_cpu * 1000000 / $changes")" \
            "pg_recvlogical's walsender" "$(calc "$recv_sender_cpu * 1000000 / $changes")" \
            "$(calc "$sender_cpu / $recv_sender_cpu")" ""
    fi

    if wants live; then
        log "live: $changes changes while etl streams"
        start="$(now)"
        read -r lsn committed_at <<< "$(run_workload "$base")"
        done_at="$(wait_confirmed "$slot" "$lsn" "$pipeline")"
        lag="$(calc "$done_at - $committed_at" 3)"
        record "live lag after last commit, s" "$lag" "target s" "0.3" "$(calc "$lag / 0.3")" "<= 1" \
            "$(load1)"
        # When the workload commits faster than a walsender can send, any client falls behind:
        # compare this rate with the drain rates above (etl, pg_recvlogical).
        record "  (workload commit rate, changes/s)" \
            "$(calc "$changes / ($committed_at - $start)" 0)" "" "" "" ""
        base=$((base + inserts + 1))
    fi
    stop_etl "$changes_pid"

    if wants live; then
        # The same workload with pg_recvlogical streaming: how soon its walsender has sent the
        # last commit (pg_recvlogical confirms only every few seconds, so sent, not confirmed).
        log "live: $changes changes while pg_recvlogical streams"
        create_slot bench_live
        pg_recvlogical -h "$source_host" -d bench -S bench_live --start --no-loop -f /dev/null \
            -o proto_version=1 -o publication_names=pub_changes &
        recv_pid=$!
        wait_pid=$recv_pid
        wait_query "select bench_wait_active('bench_live', 60)" "pg_recvlogical streaming" "" >/dev/null
        read -r lsn committed_at <<< "$(run_workload "$base")"
        done_at="$(wait_sent bench_live "$lsn")"
        kill -TERM "$recv_pid" 2>/dev/null || true
        wait "$recv_pid" 2>/dev/null || true
        wait_pid=""
        drop_slot bench_live
        recv_lag="$(calc "$done_at - $committed_at" 3)"
        record "" "" "pg_recvlogical live lag (sent), s" "$recv_lag" "$(calc "$lag / $recv_lag")" ""
    fi
}

# ---------------------------------------------------------------- one big transaction
# With $1 (off or auto): that `pipeline.streaming`, named in the figures' labels.
bench_big() {
    local mode="${1:-}" label="big txn"
    pipeline=$((pipeline + 1))
    sql "truncate bench_big"
    log "big: etl replicate (pipeline $pipeline) on bench_big${mode:+, streaming: $mode}"
    if [ -n "$mode" ]; then
        label="big txn (streaming: $mode)"
        ETL_BENCH_PIPELINE="streaming: $mode" start_etl "$pipeline" pub_big
    else
        start_etl "$pipeline" pub_big
    fi
    wait_state "$pipeline" bench_big "{ready}"
    slot="$(apply_slot "$pipeline")"
    create_slot bench_recv_big
    log "big: one transaction of $big_rows rows"
    # With protocol 2 the transaction arrives while it runs and waits in spill files: sample
    # their size (every 0.2 s) until the commit is confirmed.
    local spill_dir="${TMPDIR:-/tmp}/etl-spill/pipeline-$pipeline" spill_max="$work/spill-max"
    echo 0 > "$spill_max"
    ( while :; do
          size="$(du -sb "$spill_dir" 2>/dev/null | cut -f1)"
          [ -z "$size" ] || [ "$size" -le "$(cat "$spill_max")" ] || echo "$size" > "$spill_max"
          sleep 0.2
      done ) &
    local sampler=$!
    read -r lsn committed_at <<< "$(psql -X -q -A -t -v ON_ERROR_STOP=1 \
        -c "insert into bench_big select g, g, repeat('b', 84) from generate_series(1, $big_rows) g" \
        -c "select pg_current_wal_insert_lsn() || ' ' || extract(epoch from clock_timestamp())")"
    perf_start big
    done_at="$(wait_confirmed "$slot" "$lsn" "$pipeline")"
    perf_stop
    etl_secs="$(calc "$done_at - $committed_at" 3)"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    hwm_kb="$(awk '/^VmHWM/ { print $2 }' "/proc/$etl_pid/status")"
    stop_etl "$etl_pid"
    read -r recv_secs _ <<< "$(recvlogical_measured bench_recv_big pub_big "$lsn")"
    drop_slot bench_recv_big
    hwm_mib="$(calc "$hwm_kb / 1024" 1)"
    record "$label peak RSS, MiB" "$hwm_mib" "target MiB" "256" "$(calc "$hwm_mib / 256")" "<= 1"
    etl_rate="$(calc "$big_rows / $etl_secs" 0)"
    recv_rate="$(calc "$big_rows / $recv_secs" 0)"
    record "$label rows/s (commit to confirm)" "$etl_rate" "pg_recvlogical --endpos rows/s" \
        "$recv_rate" "$(calc "$etl_rate / $recv_rate")" "" "$(load1)"
    record "  (commit to confirm, s)" "$etl_secs" "(pg_recvlogical, s)" "$recv_secs" "" ""
    record "  (peak spill, MiB)" "$(calc "$(cat "$spill_max") / 1048576" 1)" "" "" "" ""
}

# ---------------------------------------------------------------- small transactions beside a big one
# "count median max" of the lags (commit -> first confirm sample at or past it, s) of the
# small transactions in bench_small_log matching the SQL condition $1.
small_lags() {
    sql "select count(*) || ' ' || coalesce(round(percentile_cont(0.5) within group
            (order by lag)::numeric, 3), 0) || ' ' || coalesce(round(max(lag)::numeric, 3), 0)
        from (select (select min(c.at) from bench_confirm_log c where c.lsn >= s.lsn)
                     - s.committed_at as lag
              from bench_small_log s where $1) x"
}

# With pgoutput protocol $1 (`pipeline.streaming: off` is 1, `auto` is 2): small transactions
# commit every 20 ms while one transaction of $big_rows rows runs and for 2 s after it commits;
# prints the lag (commit -> slot confirmed) of the small ones, during the big one and after it.
bench_mixed_one() {
    local streaming="$1"
    pipeline=$((pipeline + 1))
    sql "truncate bench_big, bench_small, bench_small_log, bench_confirm_log, bench_mixed_stop"
    log "mixed (streaming: $streaming): etl replicate (pipeline $pipeline)"
    ETL_BENCH_PIPELINE="streaming: $streaming" start_etl "$pipeline" pub_big_small
    wait_state "$pipeline" bench_big "{ready}"
    wait_state "$pipeline" bench_small "{ready}"
    slot="$(apply_slot "$pipeline")"
    psql -X -q -c "call bench_confirm_poller('$slot', $timeout_s)" &
    local poller=$!
    psql -X -q -c "call bench_small_writer()" &
    local writer=$!
    sleep 1
    local started lsn committed_at
    started="$(now)"
    read -r lsn committed_at <<< "$(psql -X -q -A -t -v ON_ERROR_STOP=1 \
        -c "insert into bench_big select g, g, repeat('b', 84) from generate_series(1, $big_rows) g" \
        -c "select pg_current_wal_insert_lsn() || ' ' || extract(epoch from clock_timestamp())")"
    sleep 2
    sql "insert into bench_mixed_stop values (true)"
    wait "$writer"
    local big_done
    big_done="$(wait_confirmed "$slot" "$lsn" "$pipeline")"
    wait "$poller"
    stop_etl "$etl_pid"
    local n_during med_during max_during n_after med_after max_after
    read -r n_during med_during max_during <<< "$(small_lags "committed_at > $started
                                                           and committed_at < $committed_at")"
    read -r n_after med_after max_after <<< "$(small_lags "committed_at >= $committed_at")"
    record "mixed, streaming: $streaming" "" "" "" "" "" "$(load1)"
    record "  small txns while big runs: n" "$n_during" "" "" "" ""
    record "  their lag median / max, s" "$med_during / $max_during" "" "" "" "<= 0.3"
    record "  small txns after its commit: n" "$n_after" "" "" "" ""
    record "  their lag median / max, s" "$med_after / $max_after" "" "" "" ""
    record "  big: commit -> confirmed, s" "$(calc "$big_done - $committed_at" 3)" "" "" "" ""
}

bench_mixed() {
    bench_mixed_one off
    bench_mixed_one auto
}

# ---------------------------------------------------------------- verify
# `etl verify` of pgbench_accounts against its copy in $destination while the replicator runs:
# rows/s from its start to its exit, against psql COPY TO STDOUT of the same table just before.
bench_verify() {
    if [ "$destination" != sqlite ] && [ "$destination" != postgres ]; then
        log "verify: destination $destination is not verifiable (sqlite, postgres): skipped"
        return 0
    fi
    local table=pgbench_accounts rows=$accounts_rows start psql_secs psql_rate secs rate code
    pipeline=$((pipeline + 1))
    log "verify $table: etl replicate (pipeline $pipeline) until the table is ready"
    start_etl "$pipeline" pub_accounts
    wait_state "$pipeline" "$table" "{ready}"
    sql "select count(*) from $table" >/dev/null   # warm the cache for both readers
    log "verify $table: psql COPY TO STDOUT"
    start="$(now)"
    psql -X -q -c "copy $table to stdout" > /dev/null
    psql_secs="$(calc "$(now) - $start" 3)"
    psql_rate="$(calc "$rows / $psql_secs" 0)"
    log "verify $table: etl verify"
    start="$(now)"
    code=0
    "$etl" --config-dir "$work/etl-$pipeline" --env dev verify --table "$table" \
        > "$work/etl-$pipeline/verify.out" 2> "$work/etl-$pipeline/verify.log" || code=$?
    secs="$(calc "$(now) - $start" 3)"
    stop_etl "$etl_pid"
    sql "select pg_drop_replication_slot(slot_name) from pg_replication_slots
         where slot_name like 'etl%' and not active" >/dev/null
    if [ "$code" != 0 ]; then
        echo "error: etl verify exited $code; $work/etl-$pipeline/verify.out and verify.log:" >&2
        cat "$work/etl-$pipeline/verify.out" >&2
        tail -5 "$work/etl-$pipeline/verify.log" >&2
        exit 1
    fi
    rate="$(calc "$rows / $secs" 0)"
    load="$(load1)"
    record "verify $table rows/s" "$rate" "psql COPY TO STDOUT rows/s" "$psql_rate" \
        "$(calc "$rate / $psql_rate")" "" "$load"
    record "  (etl verify, s)" "$secs" "(psql, s)" "$psql_secs" "" ""
    keep "verify $table rows/s" "$rate" "$psql_rate" "$load"
}

# Runs the selected parts with etl writing to $destination.
bench_parts() {
    header
    if wants copy; then bench_copy; fi
    if wants drain || wants live; then bench_changes; fi
    # Protocol 1 beside protocol 2 in the same run, unless ETL_BENCH_PIPELINE sets the pipeline.
    if wants big; then
        if [ -n "${ETL_BENCH_PIPELINE:-}" ]; then bench_big; else bench_big off; bench_big auto; fi
    fi
    if wants mixed; then bench_mixed; fi
    if wants verify; then bench_verify; fi
}

# ---------------------------------------------------------------- destination comparison
# Median of the numbers on stdin (one a line).
median() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR) printf "%.6f\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
# "median" or, for several numbers, "median (min-max)", of the numbers on stdin, $1 decimals.
spread() {
    local values
    values="$(sort -g)"
    local mid lo hi
    mid="$(calc "$(median <<< "$values")" "$1")"
    lo="$(calc "$(head -1 <<< "$values")" "$1")"
    hi="$(calc "$(tail -1 <<< "$values")" "$1")"
    if [ "$(wc -l <<< "$values")" -gt 1 ]; then echo "$mid ($lo-$hi)"; else echo "$mid"; fi
}

# The comparison: for each figure and destination, the median over the rounds (and the spread)
# of its absolute value, its ratio to the first destination of the same round, and its ratio to
# the limit measured beside it in that round.
compare_table() {
    local base="${compared[0]}" figure kind r key limit_name target
    row() { printf '%-29s %-9s %-26s %-17s %-7s %-24s %-17s %-9s %-17s %s\n' "$@"; }
    {
        echo
        echo "destination comparison, $rounds round(s): median (min-max) over the rounds; each ratio"
        echo "is taken within its round (x $base: same figure of $base; x limit: the limit measured"
        echo "beside it; x alone: psql piping the same rows straight into the destination, see --help)"
        row "figure" "dest" "etl" "x $base" "target" "limit" "x limit" "alone" "x alone" "load"
        for figure in "copy pgbench_accounts rows/s" "copy bench_mixed rows/s" "drain changes/s" \
                      "verify pgbench_accounts rows/s"; do
            case "$figure" in
                copy*|verify*) limit_name="psql COPY" ;;
                *) limit_name="pg_recvlogical" ;;
            esac
            for kind in "${compared[@]}"; do
                local values="" to_base="" limits="" to_limit="" loads="" alone="" to_alone=""
                for r in $(seq 1 "$rounds"); do
                    key="$r:$kind:$figure"
                    [ -n "${kept_value[$key]:-}" ] || continue
                    values+="${kept_value[$key]}"$'\n'
                    limits+="${kept_limit[$key]}"$'\n'
                    loads+="${kept_load[$key]}"$'\n'
                    to_limit+="$(calc "${kept_value[$key]} / ${kept_limit[$key]}")"$'\n'
                    to_base+="$(calc "${kept_value[$key]} / ${kept_value["$r:$base:$figure"]}")"$'\n'
                    if [ -n "${kept_target[$key]:-}" ]; then
                        alone+="${kept_target[$key]}"$'\n'
                        to_alone+="$(calc "${kept_value[$key]} / ${kept_target[$key]}")"$'\n'
                    fi
                done
                [ -n "$values" ] || continue
                target=""
                [ "$kind" = "$base" ] || target=">= 0.5"
                row "$figure" "$kind" "$(spread 0 <<< "${values%$'\n'}")" \
                    "$(spread 2 <<< "${to_base%$'\n'}")" "$target" \
                    "$limit_name $(calc "$(median <<< "${limits%$'\n'}")" 0)" \
                    "$(spread 2 <<< "${to_limit%$'\n'}")" \
                    "$([ -z "$alone" ] || calc "$(median <<< "${alone%$'\n'}")" 0)" \
                    "$([ -z "$to_alone" ] || spread 2 <<< "${to_alone%$'\n'}")" \
                    "$(spread 2 <<< "${loads%$'\n'}")"
            done
        done
    } | tee -a "$results"
}

if [ -n "$destinations" ]; then
    for round in $(seq 1 "$rounds"); do
        for destination in "${compared[@]}"; do
            log "round $round of $rounds: destination $destination"
            perf_tag="r$round-$destination-"
            bench_parts
        done
    done
    compare_table
else
    bench_parts
fi

[ -z "$out" ] || cp "$results" "$out"
log "results: $results"
