# shellcheck shell=bash
# Throwaway PostgreSQL server for the store/API test suites. SOURCE this file (do not run it):
#
#   . scripts/pg-test-env.sh        # installs PostgreSQL if needed, starts a private cluster
#   cargo test --test store_postgres
#   selfprov_pg_stop                 # stops the cluster and deletes its folder
#
# It exports SELFPROV_TEST_POSTGRES_URL=postgres://selfprov_test:PASSWORD@127.0.0.1:PORT/selfprov_test
# for a role that may create databases (each test makes its own). The cluster lives in a fresh
# temporary folder owned by the `postgres` system user, listens on 127.0.0.1 only, on a free
# port, with its unix socket inside that folder: it never touches a system cluster.
# Sets no trap (the caller owns its traps): call selfprov_pg_stop when done. Every wait is
# bounded. Returns non-zero (and prints why) on failure; the caller decides whether to exit.

selfprov_pg__log() { printf 'pg-test-env: %s\n' "$*" >&2; }

# The folder holding initdb, pg_ctl, pg_isready and psql together: the newest Debian install
# (/usr/lib/postgresql/N/bin), else the folder of initdb on PATH.
selfprov_pg__bindir() {
    local d tool ok
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV) \
        "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"; do
        ok=1
        for tool in initdb pg_ctl pg_isready psql; do
            [ -x "$d/$tool" ] || ok=0
        done
        if [ "$ok" = 1 ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

# Runs a command as the postgres system user (initdb and the server refuse to run as root).
selfprov_pg__as_postgres() {
    if [ "$(id -un)" = postgres ]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

# A TCP port nobody listens on, chosen by the kernel (bind to port 0).
selfprov_pg__free_port() {
    python3 - <<'PY' 2>/dev/null && return 0
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
    # No python3: try random high ports until one is not in use.
    local p i
    for i in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

selfprov_pg_start() {
    local bindir
    if ! bindir=$(selfprov_pg__bindir); then
        if [ "$(id -u)" != 0 ]; then
            selfprov_pg__log "PostgreSQL is not installed and this is not root: install the postgresql package"
            return 1
        fi
        selfprov_pg__log "installing PostgreSQL (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null || { selfprov_pg__log "apt-get update failed"; return 1; }
        apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
            || { selfprov_pg__log "apt-get install postgresql failed"; return 1; }
        bindir=$(selfprov_pg__bindir) || { selfprov_pg__log "initdb not found after installing"; return 1; }
    fi
    if ! id postgres >/dev/null 2>&1; then
        selfprov_pg__log "no postgres system user (the Debian postgresql package creates it)"
        return 1
    fi

    local dir port password
    dir=$(mktemp -d /tmp/selfprov-pg.XXXXXX) || return 1
    chown postgres: "$dir" && chmod 700 "$dir" || { rm -rf "$dir"; return 1; }
    port=$(selfprov_pg__free_port) || { selfprov_pg__log "no free port"; rm -rf "$dir"; return 1; }
    # Letters and digits only: safe in a URL and in SQL without quoting tricks.
    # (not `tr </dev/urandom | head`: under the caller's pipefail the SIGPIPE to tr fails the pipeline)
    password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')

    SELFPROV_PG_DIR=$dir
    SELFPROV_PG_BINDIR=$bindir
    export SELFPROV_PG_DIR SELFPROV_PG_BINDIR

    if ! selfprov_pg__as_postgres "$bindir/initdb" -D "$dir/data" -U postgres -A trust \
        -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1; then
        # Older clusters lack C.UTF-8: retry with C.
        if ! selfprov_pg__as_postgres "$bindir/initdb" -D "$dir/data" -U postgres -A trust \
            -E UTF8 --locale=C >"$dir/initdb.log" 2>&1; then
            selfprov_pg__log "initdb failed:"; cat "$dir/initdb.log" >&2
            rm -rf "$dir"; return 1
        fi
    fi
    # Password auth over TCP for the test role; trust only on the private unix socket.
    printf '%s\n' \
        "local all all trust" \
        "host all all 127.0.0.1/32 scram-sha-256" >"$dir/data/pg_hba.conf"
    chown postgres: "$dir/data/pg_hba.conf"

    if ! selfprov_pg__as_postgres "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=off" \
        start >/dev/null 2>&1; then
        selfprov_pg__log "the server did not start:"; tail -n 20 "$dir/server.log" >&2
        selfprov_pg_stop; return 1
    fi
    local waited=0
    until "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; do
        waited=$((waited + 1))
        if [ "$waited" -ge 30 ]; then
            selfprov_pg__log "the server is not ready after 30 s:"; tail -n 20 "$dir/server.log" >&2
            selfprov_pg_stop; return 1
        fi
        sleep 1
    done
    if ! selfprov_pg__as_postgres "$bindir/psql" -v ON_ERROR_STOP=1 -q -h "$dir" -p "$port" -U postgres \
        -d postgres >"$dir/setup.log" 2>&1 <<SQL
CREATE ROLE selfprov_test LOGIN CREATEDB PASSWORD '$password';
-- DROP DATABASE ... WITH (FORCE) must be able to end an autovacuum worker in the database.
GRANT pg_signal_backend TO selfprov_test;
CREATE DATABASE selfprov_test OWNER selfprov_test;
SQL
    then
        selfprov_pg__log "creating the test role failed:"; cat "$dir/setup.log" >&2
        selfprov_pg_stop; return 1
    fi
    SELFPROV_TEST_POSTGRES_URL="postgres://selfprov_test:${password}@127.0.0.1:${port}/selfprov_test"
    SELFPROV_PG_PORT=$port
    export SELFPROV_TEST_POSTGRES_URL SELFPROV_PG_PORT
    selfprov_pg__log "PostgreSQL $("$bindir/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port (data in $dir)"
    return 0
}

# Stops the throwaway cluster and removes its folder. Safe to call twice, or after a failed start.
selfprov_pg_stop() {
    if [ -n "${SELFPROV_PG_DIR:-}" ] && [ -d "$SELFPROV_PG_DIR" ]; then
        if [ -f "$SELFPROV_PG_DIR/data/postmaster.pid" ]; then
            selfprov_pg__as_postgres "$SELFPROV_PG_BINDIR/pg_ctl" -D "$SELFPROV_PG_DIR/data" \
                -m fast -w -t 30 stop >/dev/null 2>&1 \
                || selfprov_pg__as_postgres "$SELFPROV_PG_BINDIR/pg_ctl" -D "$SELFPROV_PG_DIR/data" \
                    -m immediate -w -t 10 stop >/dev/null 2>&1
        fi
        rm -rf "$SELFPROV_PG_DIR"
    fi
    unset SELFPROV_PG_DIR SELFPROV_PG_BINDIR SELFPROV_PG_PORT SELFPROV_TEST_POSTGRES_URL
}

selfprov_pg_start
