#!/usr/bin/env bash
# The project's one test command: formatting, the Kubernetes manifests (scripts/k8s-manifests.sh),
# lints and the whole test suite against a real PostgreSQL with wal_level=logical.
#
# Uses ETL_TEST_DATABASE_URL when set; otherwise starts a throwaway cluster with
# scripts/test-postgres.sh and stops it afterwards. Extra arguments go to `cargo test`.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

started=""
cleanup() {
    if [ -n "$started" ]; then "$repo/scripts/test-postgres.sh" stop || true; fi
}
trap cleanup EXIT

if [ -z "${ETL_TEST_DATABASE_URL:-}" ]; then
    export ETL_TEST_PG_DIR="${ETL_TEST_PG_DIR:-$(mktemp -d /tmp/etl-test-pg.XXXXXX)}"
    ETL_TEST_DATABASE_URL="$("$repo/scripts/test-postgres.sh" start)"
    export ETL_TEST_DATABASE_URL
    started=1
    echo "==> test PostgreSQL: $ETL_TEST_DATABASE_URL"
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> Kubernetes manifests: kubectl kustomize, kubernetes-validate (1.33, strict)"
"$repo/scripts/k8s-manifests.sh"
# tests/k8s/deploy.rs renders deploy/ with this kubectl too (and fails under CI without it).
ETL_KUBECTL="$("$repo/scripts/k8s-manifests.sh" install)"
export ETL_KUBECTL
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "==> cargo test"
cargo test --all-targets "$@"
