#!/usr/bin/env bash
# Runs the follow-up service with a small demo: starts PostgreSQL and NATS when needed
# (installing them on a Debian machine that lacks them), builds and starts `followupd all`
# (rule worker, notifier, projector, relay and the HTTP API on FOLLOWUP_HTTP_ADDR), subscribes
# a caseworker to structure date changes and listens on its live stream, publishes the
# contract examples and a simulated admission day, and shows the exceptions, tasks and
# notifications that appear: live, in the event store and through the API with a ready-made
# token. On a terminal it then keeps the service running until Ctrl-C; otherwise it stops
# after the demo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. deploy/ensure-services.sh

export RUST_LOG="${RUST_LOG:-info,async_nats=warn,sqlx=warn}"
export FOLLOWUP_HTTP_ADDR="${FOLLOWUP_HTTP_ADDR:-127.0.0.1:8080}"
# A development secret; set your own for anything but a demo.
export FOLLOWUP_JWT_SECRET="${FOLLOWUP_JWT_SECRET:-development-only-secret-0123456789abcdef}"
# The web inbox's development sign-in (choose any user): for the demo only.
export FOLLOWUP_DEV_LOGIN="${FOLLOWUP_DEV_LOGIN:-true}"
echo "== the caseworkers' web inbox will be at http://$FOLLOWUP_HTTP_ADDR/app/"
echo "   (sign in as user 'demo', institution KP, team admissions)"
echo "== building"
cargo build --locked --release -p followupd -p followupctl
bin=target/release

mkdir -p .local
echo "== starting followupd all (log: .local/followupd.log)"
"$bin/followupd" all >.local/followupd.log 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    grep -q "followupd running" .local/followupd.log && break
    kill -0 "$server" 2>/dev/null || { cat .local/followupd.log; echo "followupd did not start"; exit 1; }
    sleep 0.2
done

count_events() { psql "$DATABASE_URL" -qtAc "select count(*) from events"; }

wait_quiet() {
    # Until the event store has stopped growing for a second.
    local last=-1 now
    for _ in $(seq 1 60); do
        now=$(count_events)
        [ "$now" = "$last" ] && return 0
        last=$now
        sleep 1
    done
}

token="$("$bin/followupctl" token --sub demo --inst KP --team admissions --role caseworker)"
api="http://$FOLLOWUP_HTTP_ADDR"
live_pid=
if command -v curl >/dev/null; then
    echo
    echo "== caseworker 'demo' at KP subscribes to structure date changes of Sygeplejerskeuddannelsen"
    echo "POST $api/v1/subscriptions"
    curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d '{"topic":"education_structure.dates_changed","filter":{"education":"Sygeplejerskeuddannelsen"},"delivery":"immediate"}' \
        "$api/v1/subscriptions"; echo
    echo "== and listens on its live stream (GET $api/v1/stream, log: .local/live.log)"
    curl -sN -H "Authorization: Bearer $token" "$api/v1/stream" >.local/live.log 2>&1 &
    live_pid=$!
    trap 'kill "$live_pid" 2>/dev/null; kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
    sleep 1
fi
echo
echo "== publishing the contract examples (docs/contracts/examples)"
"$bin/followupctl" simulate examples
wait_quiet
echo
echo "== publishing a simulated admission day: 60 transfers, 30 % with defects, 5 % failing"
"$bin/followupctl" simulate day --transfers 60 --seed "$(date +%s)"
wait_quiet
echo
echo "== follow-ups at KP and UCL (followupctl show)"
"$bin/followupctl" show --institution KP | tail -n 12
"$bin/followupctl" show --institution UCL | tail -n 4
echo
echo "== the same through the API, as a caseworker in KP's admissions team"
if command -v curl >/dev/null; then
    echo "== live: the notification as it arrived on the demo user's stream"
    live_line="$(grep '^data:' .local/live.log | grep '"kind":"notification"' | head -n 1 || true)"
    if [ -n "$live_line" ]; then
        printf '%s\n' "${live_line:0:700}"
    else
        echo "(nothing new this time: an earlier run notified 'demo' of this example already;"
        echo " every message is handled exactly once, and the examples keep their ids)"
    fi
    echo "GET $api/v1/notifications"
    curl -fsS -H "Authorization: Bearer $token" "$api/v1/notifications" | head -c 800; echo
    echo "GET $api/v1/dashboard"
    curl -fsS -H "Authorization: Bearer $token" "$api/v1/dashboard"; echo
    echo "GET $api/v1/followups?kind=exception&status=open&limit=3"
    curl -fsS -H "Authorization: Bearer $token" "$api/v1/followups?kind=exception&status=open&limit=3" | head -c 1500; echo
fi
echo
echo "Web inbox:      http://$FOLLOWUP_HTTP_ADDR/app/  (sign in as demo / KP / admissions)"
echo "Try it:         curl -H \"Authorization: Bearer $token\" $api/v1/followups"
echo "API document:   $api/openapi.json"
echo "All follow-ups: $bin/followupctl show    (as JSON: --json)"
echo "Publish more:   $bin/followupctl simulate day --transfers 200"

if [ -t 0 ]; then
    echo
    echo "followupd keeps running; Ctrl-C stops it."
    wait "$server"
fi
