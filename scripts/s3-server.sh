#!/usr/bin/env bash
# A throwaway S3-compatible object store for tests: `s3s-fs` (crates.io, pinned), a server of the
# S3 REST protocol, SigV4 request signing checked, that keeps each bucket as a directory. Built
# once with `cargo install` into ETL_S3_TOOLS (default /var/tmp/etl-s3). MinIO and the AWS
# endpoints cannot be fetched or reached here; s3s-fs serves the calls an Iceberg writer and
# reader make (put, get with ranges, head, delete, list). Built with the dev profile (`--debug`):
# it compiles in about two minutes, and the store is not what the tests measure.
#
#   scripts/s3-server.sh start     # start (or reuse) it and print its endpoint (http://127.0.0.1:PORT)
#   scripts/s3-server.sh stop      # stop it (SIGTERM, then SIGKILL) and delete its directory
#   scripts/s3-server.sh install   # only build/install; print the binary's path
#
# The server accepts one key pair: access key `etl-test`, secret `etl-test-secret`
# (ETL_S3_ACCESS_KEY / ETL_S3_SECRET_KEY change them), and holds one bucket, `lake`.
# ETL_S3_DIR moves its directory (default /tmp/etl-s3): port, pid, log, and the buckets (data/).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

VERSION="0.14.1"   # 0.15 and later need a newer rustc than this machine's 1.95
tools="${ETL_S3_TOOLS:-/var/tmp/etl-s3}"
dir="${ETL_S3_DIR:-/tmp/etl-s3}"
access_key="${ETL_S3_ACCESS_KEY:-etl-test}"
secret_key="${ETL_S3_SECRET_KEY:-etl-test-secret}"
stamp_text="s3s-fs $VERSION debug"

die() {
    echo "s3-server: $*" >&2
    exit 1
}

install_server() {
    local stamp="$tools/.installed"
    if [ -x "$tools/bin/s3s-fs" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$stamp_text" ]; then
        return
    fi
    echo "==> building $stamp_text into $tools (once; a few minutes)" >&2
    mkdir -p "$tools"
    CARGO_TARGET_DIR="$tools/target" cargo install "s3s-fs@$VERSION" --features binary --locked \
        --debug --quiet --root "$tools" >&2 \
        || die "cannot build s3s-fs $VERSION from crates.io (cargo install)"
    rm -rf "$tools/target"   # build products, not needed to run it
    "$tools/bin/s3s-fs" --version >/dev/null 2>&1 || die "the installed s3s-fs does not run"
    echo "$stamp_text" >"$stamp"
}

endpoint() {
    echo "http://127.0.0.1:$(cat "$dir/port")"
}

running() {
    pidfile_running "$dir/pid"
}

start() {
    install_server
    mkdir -p "$dir/data/lake"
    if [ ! -f "$dir/port" ]; then free_port >"$dir/port"; fi
    if running; then endpoint; return; fi
    RUST_LOG="${ETL_S3_LOG:-warn}" "$tools/bin/s3s-fs" --host 127.0.0.1 --port "$(cat "$dir/port")" \
        --access-key "$access_key" --secret-key "$secret_key" "$dir/data" \
        >"$dir/s3s.log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2)" \
            "$(cat "$dir/port")" 2>/dev/null; then
            endpoint
            return
        fi
        running || break
        sleep 0.1
    done
    tail -20 "$dir/s3s.log" >&2 || true
    die "the server did not start listening; log: $dir/s3s.log"
}

case "${1:-}" in
    install) install_server; echo "$tools/bin/s3s-fs" ;;
    start) start ;;
    stop) pidfile_stop "$dir/pid"; rm -rf "$dir" ;;
    *) die "usage: $0 start|stop|install" ;;
esac
