#!/usr/bin/env bash
# A throwaway Kafka-protocol broker for tests and benchmarks: `tansu` (crates.io, pinned), built
# once with `cargo install` into ETL_KAFKA_TOOLS (default /var/tmp/etl-kafka), keeping its data in
# memory, listening on 127.0.0.1 on a free port. Apache Kafka's own distribution cannot be
# fetched here (no Maven Central, no apache.org downloads); tansu speaks the Kafka protocol,
# transactions and read_committed fetches included. Pinned to 0.4.9: tansu 0.5 and 0.6 no
# longer route EndTxn, so no transaction can commit on them. Built with the dev profile (`--debug`):
# it compiles in about half the time, and the broker is not what the tests measure.
#
#   scripts/kafka-server.sh start     # start (or reuse) it and print its address (127.0.0.1:PORT)
#   scripts/kafka-server.sh address   # print the address of the running broker
#   scripts/kafka-server.sh pause     # freeze it (SIGSTOP): connections hang, nothing answers
#   scripts/kafka-server.sh resume    # let it run again (SIGCONT), data and port as they were
#   scripts/kafka-server.sh stop      # stop it (SIGTERM, then SIGKILL) and delete its directory
#   scripts/kafka-server.sh install   # only build/install; print the binary's path
#
# ETL_KAFKA_OPT_LEVEL=1 builds it with opt-level 1 (for benchmarks: it serves several times
# faster, and takes about twice as long to build); use its own ETL_KAFKA_TOOLS.
# ETL_KAFKA_ADVERTISE=HOST:PORT makes the broker tell clients to connect there instead (e.g. a
# TLS-terminating proxy in front of it, as the kafka TLS test does).
# ETL_KAFKA_DIR moves the broker's directory (default /tmp/etl-kafka): port, pid, log. The
# broker keeps its data in memory, so an outage is simulated with pause/resume, not a restart.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

VERSION="0.4.9"
tools="${ETL_KAFKA_TOOLS:-/var/tmp/etl-kafka}"
dir="${ETL_KAFKA_DIR:-/tmp/etl-kafka}"
opt_level="${ETL_KAFKA_OPT_LEVEL:-0}"
stamp_text="tansu $VERSION debug"
if [ "$opt_level" != 0 ]; then stamp_text="$stamp_text opt-level $opt_level"; fi

die() {
    echo "kafka-server: $*" >&2
    exit 1
}

install_broker() {
    local stamp="$tools/.installed"
    if [ -x "$tools/bin/tansu" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$stamp_text" ]; then
        return
    fi
    echo "==> building $stamp_text into $tools (once; a few minutes)" >&2
    mkdir -p "$tools"
    CARGO_TARGET_DIR="$tools/target" CARGO_PROFILE_DEV_OPT_LEVEL="$opt_level" cargo install "tansu@$VERSION" --locked --debug --quiet \
        --root "$tools" >&2 \
        || die "cannot build tansu $VERSION from crates.io (cargo install)"
    rm -rf "$tools/target"   # ~2 GB of build products, not needed to run it
    "$tools/bin/tansu" --version >/dev/null 2>&1 || die "the installed tansu does not run"
    echo "$stamp_text" >"$stamp"
}

address() {
    echo "127.0.0.1:$(cat "$dir/port")"
}

running() {
    pidfile_running "$dir/pid"
}

start() {
    install_broker
    mkdir -p "$dir"
    if [ ! -f "$dir/port" ]; then free_port >"$dir/port"; fi
    if running; then address; return; fi
    local url="tcp://127.0.0.1:$(cat "$dir/port")"
    local advertised="$url"
    if [ -n "${ETL_KAFKA_ADVERTISE:-}" ]; then advertised="tcp://$ETL_KAFKA_ADVERTISE"; fi
    RUST_LOG="${ETL_KAFKA_LOG:-warn}" "$tools/bin/tansu" broker \
        --storage-engine "memory://tansu/" \
        --listener-url "$url" --advertised-listener-url "$advertised" \
        >"$dir/tansu.log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2)" \
            "$(cat "$dir/port")" 2>/dev/null; then
            address
            return
        fi
        running || break
        sleep 0.1
    done
    tail -20 "$dir/tansu.log" >&2 || true
    die "the broker did not start listening; log: $dir/tansu.log"
}

stop() {
    pidfile_stop "$dir/pid"
}

signal() {
    running || die "no broker is running in $dir"
    kill "-$1" "$(cat "$dir/pid")"
}

case "${1:-}" in
    install) install_broker; echo "$tools/bin/tansu" ;;
    start) start ;;
    address) address ;;
    pause) signal STOP ;;
    resume) signal CONT ;;
    stop) stop; rm -rf "$dir" ;;
    *) die "usage: $0 start|address|pause|resume|stop|install" ;;
esac
