#!/usr/bin/env bash
# Makes sure PostgreSQL and NATS with JetStream are running on this machine, installing the
# Debian packages `postgresql` and `nats-server` when they are missing, and creates the
# database. Source it (`. deploy/ensure-services.sh`) to get DATABASE_URL and NATS_URL
# exported; run it to just ensure the services.
#
# Settings (environment): DATABASE_URL (default postgres://postgres@127.0.0.1:5432/followups),
# NATS_URL (default nats://127.0.0.1:4222). Only local servers are started; a remote URL is
# used as it is.
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
export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
if ! command -v nats-server >/dev/null; then
    install_debian_package nats-server
fi
if ! port_open 127.0.0.1 4222; then
    log "starting nats-server with JetStream (store in .local/nats)"
    nohup setsid nats-server -a 127.0.0.1 -p 4222 -js -sd "$state_dir/nats" \
        >"$state_dir/nats.log" 2>&1 </dev/null &
    wait_for_port 127.0.0.1 4222 nats-server
fi

log "PostgreSQL at $DATABASE_URL, NATS at $NATS_URL"
