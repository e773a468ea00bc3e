# Starts a throwaway control plane for scripts/api-fuzz.sh and scripts/bench-api.sh (sourced):
# a fresh database in the test cluster (ETL_TEST_DATABASE_URL, else a cluster of its own), the
# `app` migrations, a config dir with random keys and the `local` runtime, and `etl serve-api`
# on a free port. Sets API_URL, API_KEY, API_DB_URL and SOURCE_JSON; `api_env_stop` cleans up.
#
# ETL_BIN picks the binary (default: target/release/etl, built if missing).

api_env_start() {
    local repo="$1"
    . "$repo/scripts/lib.sh"
    API_WORK="$(mktemp -d /tmp/etl-api-env.XXXXXX)"
    chmod 755 "$API_WORK"   # a cluster of its own runs as the postgres user when we are root
    API_STARTED_PG=""
    if [ -z "${ETL_TEST_DATABASE_URL:-}" ]; then
        export ETL_TEST_PG_DIR="$API_WORK/pg"
        ETL_TEST_DATABASE_URL="$("$repo/scripts/test-postgres.sh" start)"
        API_STARTED_PG=1
    fi
    if [ -z "${ETL_BIN:-}" ]; then
        ETL_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/etl"
        if [ ! -x "$ETL_BIN" ]; then
            (cd "$repo" && cargo build --release --bin etl)
        fi
    fi
    local db="etl_api_env_$$"
    psql "$ETL_TEST_DATABASE_URL" -qc "drop database if exists $db" -c "create database $db" >/dev/null
    API_DB_URL="${ETL_TEST_DATABASE_URL%/*}/$db"
    "$ETL_BIN" migrate api --database-url "$API_DB_URL" >/dev/null

    local port
    port="$(free_port)"
    API_KEY="$("$ETL_BIN" api generate-key)"
    mkdir -p "$API_WORK/config"
    cat > "$API_WORK/config/dev.yaml" <<YAML
database: {url: '$API_DB_URL'}
api:
  listen: 127.0.0.1:$port
  api_keys: ["$API_KEY"]
  encryption_keys: [{id: 1, key: "$("$ETL_BIN" api generate-key)"}]
  runtime: local
  local: {state_dir: '$API_WORK/state'}
YAML
    env -u APP_ENVIRONMENT RUST_LOG="${RUST_LOG:-warn}" \
        "$ETL_BIN" --env dev --config-dir "$API_WORK/config" serve-api \
        > "$API_WORK/serve-api.log" 2>&1 &
    API_PID=$!
    API_URL="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        if curl -sf "$API_URL/health_check" >/dev/null; then break; fi
        sleep 0.1
    done
    curl -sf "$API_URL/health_check" >/dev/null || {
        echo "error: serve-api did not come up; log:" >&2
        cat "$API_WORK/serve-api.log" >&2
        return 1
    }
    # The control-plane database doubles as a reachable source.
    local user_pass host_port
    user_pass="${ETL_TEST_DATABASE_URL#postgres://}"; user_pass="${user_pass%%@*}"
    host_port="${ETL_TEST_DATABASE_URL#*@}"; host_port="${host_port%%/*}"
    SOURCE_JSON="{\"host\": \"${host_port%:*}\", \"port\": ${host_port##*:}, \"name\": \"$db\", \
\"username\": \"${user_pass%%:*}\", \"password\": \"${user_pass#*:}\", \"tls\": {\"mode\": \"disable\"}}"
    export API_URL API_KEY API_DB_URL SOURCE_JSON
}

# curl against the API with the key; extra arguments go to curl.
api() {
    curl -sS -H "Authorization: Bearer $API_KEY" -H 'content-type: application/json' "$@"
}

api_env_stop() {
    if [ -n "${API_PID:-}" ]; then kill "$API_PID" 2>/dev/null || true; wait "$API_PID" 2>/dev/null || true; fi
    if [ -n "${API_DB_URL:-}" ]; then
        psql "$ETL_TEST_DATABASE_URL" -qc "drop database if exists ${API_DB_URL##*/} with (force)" >/dev/null 2>&1 || true
    fi
    if [ -n "${API_STARTED_PG:-}" ]; then "$repo/scripts/test-postgres.sh" stop || true; fi
    rm -rf "${API_WORK:-/nonexistent}"
}
