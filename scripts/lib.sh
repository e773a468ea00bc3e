# Helpers shared by the scripts in this folder (sourced, not run).

# Directory of the PostgreSQL server binaries (initdb, pg_ctl, postgres).
pg_bindir() {
    if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ]; then latest="$dir"; fi
    done
    if [ -n "${latest:-}" ]; then echo "$latest"; return; fi
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
    echo "error: PostgreSQL server binaries not found (apt-get install postgresql, or set PG_BINDIR)" >&2
    return 1
}

# Runs a command as the `postgres` OS user when we are root (initdb and postgres refuse root).
as_pg_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A TCP port nobody listens on.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Creates (if needed) and starts a local cluster with logical replication.
#   $1 data dir, $2 port, $3 superuser, $4 password, $5 log file
start_local_cluster() {
    local data="$1" port="$2" user="$3" password="$4" log="$5" bin
    bin="$(pg_bindir)" || return 1
    mkdir -p "$data"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$data"; chmod 700 "$data"; fi
    if [ ! -f "$data/PG_VERSION" ]; then
        local pwfile
        pwfile="$(mktemp)"
        printf '%s\n' "$password" > "$pwfile"
        chmod 644 "$pwfile"
        as_pg_owner "$bin/initdb" -D "$data" -U "$user" --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
        rm -f "$pwfile"
    fi
    touch "$log"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$log"; fi
    if as_pg_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        return 0
    fi
    as_pg_owner "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start -o "\
        -c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=/tmp \
        -c wal_level=logical -c max_replication_slots=100 -c max_wal_senders=100 \
        -c max_connections=400 -c fsync=${PG_FSYNC:-on} -c shared_buffers=256MB \
        -c max_slot_wal_keep_size=${PG_MAX_SLOT_WAL_KEEP_SIZE:--1}" >/dev/null
}

stop_local_cluster() {
    local data="$1" bin
    bin="$(pg_bindir)" || return 1
    if [ -f "$data/PG_VERSION" ]; then
        as_pg_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
    fi
}
