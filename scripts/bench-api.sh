#!/usr/bin/env bash
# Latency and throughput of the control plane's read routes under load, measured with wrk
# (Debian package `wrk`) against a release build of `etl serve-api` with a fresh database
# holding PIPELINES pipelines (default 100) of one tenant.
#
# For each route: (1) a paced run at about RATE requests/s (default 500; each of CONNECTIONS
# connections waits between requests) reporting p50/p99 latency, the number the target
# "p99 < 10 ms at 500 requests/s" is about; (2) a saturation run (no pause) reporting the
# maximum requests/s and its latency.
#
#   scripts/bench-api.sh
#   PIPELINES=1000 DURATION=30 scripts/bench-api.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
. "$repo/scripts/api-env.sh"
command -v wrk >/dev/null || { echo "error: wrk not found (apt-get install wrk)" >&2; exit 1; }

pipelines="${PIPELINES:-100}"
duration="${DURATION:-15}"
rate="${RATE:-500}"
connections="${CONNECTIONS:-10}"

trap api_env_stop EXIT
api_env_start "$repo"
echo "==> control plane at $API_URL, seeding $pipelines pipelines"
api -X PUT "$API_URL/v1/tenants/bench" -d '{"name": "Bench"}' >/dev/null
api "$API_URL/v1/images" -d '{"name": "etl:bench"}' >/dev/null
api -H 'tenant_id: bench' "$API_URL/v1/sources" -d "{\"name\": \"src\", \"config\": $SOURCE_JSON}" >/dev/null
api -H 'tenant_id: bench' "$API_URL/v1/destinations" -d '{"name": "mem", "config": {"memory": {}}}' >/dev/null
for i in $(seq 1 "$pipelines"); do
    api -H 'tenant_id: bench' "$API_URL/v1/pipelines" \
        -d "{\"source_id\": 1, \"destination_id\": 1, \"publication_name\": \"pub_$i\"}" >/dev/null
done

script="$API_WORK/bench.lua"
cat > "$script" <<'LUA'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
wrk.headers["tenant_id"] = "bench"
local pause = tonumber(os.getenv("PAUSE_MS") or "0")
function delay() return pause end
LUA

# Per-connection pause for the paced run: connections / rate, in ms.
pause_ms=$(( connections * 1000 / rate ))
report() { # $1 label, $2 wrk output
    local rps p50 p99
    rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$2")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$2")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$2")"
    errors="$(grep -E 'Non-2xx|Socket errors' <<<"$2" || true)"
    printf '%-34s %10s req/s   p50 %8s   p99 %8s %s\n' "$1" "$rps" "$p50" "$p99" "$errors"
}
for path in "/v1/pipelines" "/v1/pipelines/1"; do
    paced="$(PAUSE_MS=$pause_ms wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$script" "$API_URL$path")"
    report "GET $path (paced ~${rate}/s)" "$paced"
    full="$(PAUSE_MS=0 wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$script" "$API_URL$path")"
    report "GET $path (saturated)" "$full"
done
echo "(machine: $(nproc) cores; $pipelines pipelines in the list; $connections connections; ${duration}s per run)"
