#!/usr/bin/env bash
# Runs the follow-up service with a demo of a caseworker's day at KP: starts PostgreSQL and
# NATS when needed (installing them on a Debian machine that lacks them), builds and starts
# `followupd all` (every role, the HTTP API and the web inbox on FOLLOWUP_HTTP_ADDR), and
# then, as upstream ESAS and the caseworker 'demo' in KP's teams admissions and
# studieadministration would:
#   - subscribes 'demo' to structure date changes (at once) and to guest data share requests
#     (a daily digest), and listens on its live stream;
#   - publishes the contract examples and five days of applicant transfers at KP (failed
#     ones and ones with missing SUEs; some fixed by a later run, the oldest past their due
#     date), guest students' data share requests and structure date changes;
#   - creates tasks for 'demo' and for its team through the API;
#   - fires the scheduler's overdue and digest jobs at once (exactly once, as the scheduler
#     would), and shows what the caseworker now has.
# It leaves the settings it used in .local/env, where followupctl and followupd started in
# this directory find them. On a terminal it then keeps the service running until Ctrl-C;
# otherwise it stops after the demo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. deploy/ensure-services.sh

export RUST_LOG="${RUST_LOG:-info,async_nats=warn,sqlx=warn}"
export FOLLOWUP_HTTP_ADDR="${FOLLOWUP_HTTP_ADDR:-127.0.0.1:8080}"
# A development secret; set your own for anything but a demo.
export FOLLOWUP_JWT_SECRET="${FOLLOWUP_JWT_SECRET:-development-only-secret-0123456789abcdef}"
# The web inbox's development sign-in (choose any user): for the demo only.
export FOLLOWUP_DEV_LOGIN="${FOLLOWUP_DEV_LOGIN:-true}"

mkdir -p .local
{
    echo "# Written by deploy/run.sh: the settings of the local demo system. followupctl and"
    echo "# followupd started in the repository's directory read it for the variables that"
    echo "# are unset (FOLLOWUP_ENV_FILE names another file)."
    for name in DATABASE_URL FOLLOWUP_MIGRATE_DATABASE_URL FOLLOWUP_ADMIN_DATABASE_URL NATS_URL \
        FOLLOWUP_HTTP_ADDR FOLLOWUP_JWT_SECRET FOLLOWUP_DEV_LOGIN; do
        if [ -n "${!name:-}" ]; then printf '%s=%s\n' "$name" "${!name}"; fi
    done
} >.local/env

echo "== building (cargo build --release)"
cargo build --locked --release --quiet -p followupd -p followupctl
bin=target/release
ctl="$bin/followupctl"

echo "== starting followupd all (log: .local/followupd.log)"
"$bin/followupd" all >.local/followupd.log 2>&1 &
server=$!
live_pid=
cleanup() {
    [ -n "$live_pid" ] && kill "$live_pid" 2>/dev/null
    kill "$server" 2>/dev/null
    wait "$server" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 150); do
    grep -q "followupd running" .local/followupd.log && break
    kill -0 "$server" 2>/dev/null || { cat .local/followupd.log; echo "followupd did not start"; exit 1; }
    sleep 0.2
done

count_events() { psql "$DATABASE_URL" -qtAc "select count(*) from events"; }
projected() {
    # t once the projector's checkpoint is at the newest event (or nothing is stored yet).
    psql "$DATABASE_URL" -qtAc "select coalesce((select position from projection_checkpoints where name = 'followups'), 0) >= coalesce((select max(position) from events), 0)" 2>/dev/null
}
wait_quiet() {
    # Until the event store has stopped growing for a second and the read model caught up.
    local last=-1 now
    for _ in $(seq 1 60); do
        now=$(count_events)
        [ "$now" = "$last" ] && [ "$(projected)" != f ] && return 0
        last=$now
        sleep 1
    done
}

api="http://$FOLLOWUP_HTTP_ADDR"
token="$("$ctl" token --sub demo --inst KP --team admissions --team studieadministration --role caseworker)"
call() {
    # call METHOD PATH [BODY]: the API as 'demo'; fails on an error answer.
    local method=$1 path=$2
    shift 2
    curl -fsS -X "$method" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        "$@" "$api$path"
}
# Prints the "subject" values of a JSON answer, one per line (no JSON tool needed).
subjects() { grep -o '"subject":"[^"]*"' | sed 's/^"subject":"//; s/"$//; s/^/   /'; }
days_from_now() { date -u -d "$1 days" +%Y-%m-%dT09:00:00Z; }

echo
echo "== 'demo' subscribes to date changes of Sygeplejerskeuddannelsen (at once) and to guest"
echo "   data share requests at KP (a daily digest at 07:00), and listens on its live stream"
call POST /v1/subscriptions -o /dev/null \
    -d '{"topic":"education_structure.dates_changed","filter":{"education":"Sygeplejerskeuddannelsen"},"delivery":"immediate"}'
call POST /v1/subscriptions -o /dev/null \
    -d '{"topic":"guest_student.data_share_requested","filter":{"home_institution":"KP"},"delivery":"daily_digest"}'
curl -sN -H "Authorization: Bearer $token" "$api/v1/stream" >.local/live.log 2>&1 &
live_pid=$!
sleep 1

echo
echo "== ESAS publishes: the contract examples, and five days of KP's admissions"
"$ctl" simulate examples | sed 's/^/   /'
"$ctl" simulate day --institutions KP --transfers 70 --defects 0.3 --failures 0.1 \
    --fixed-later 0.3 --spread-days 5 --guest-requests 3 --date-changes 4 \
    --seed "$(date +%s)" | sed 's/^/   /'
wait_quiet

echo
echo "== 'demo' creates tasks through the API (POST $api/v1/followups)"
call POST /v1/followups -o /dev/null -d "{\"kind\":\"task\",\"subject\":\"Ring til ansøger om manglende eksamensbevis\",\"due\":\"$(days_from_now 2)\",\"priority\":\"high\"}"
call POST /v1/followups -o /dev/null -d "{\"kind\":\"task\",\"subject\":\"Svar på klage over afslag på optagelse\",\"due\":\"$(days_from_now -1)\"}"
call POST /v1/followups -o /dev/null -d "{\"kind\":\"task\",\"subject\":\"Kontrollér optagelsesbreve til efterårets hold\",\"due\":\"$(days_from_now 4)\",\"owner\":{\"type\":\"team\",\"id\":\"admissions\"}}"
echo "   2 for 'demo' (one already overdue), 1 for the team admissions"
wait_quiet

echo
echo "== the scheduler's overdue and digest jobs, fired now (followupctl schedule fire)"
"$ctl" schedule fire overdue | sed 's/^/   /'
"$ctl" schedule fire digest | sed 's/^/   /'
wait_quiet

echo
echo "== KP's open exceptions: $("$ctl" show --institution KP --kind exception --status open | tail -n 1)"
echo "   (followupctl show --institution KP --kind exception --status open)"
echo
echo "== what 'demo' sees (GET $api/v1/dashboard)"
call GET /v1/dashboard; echo
echo
echo "== its most urgent exceptions (GET $api/v1/followups?kind=exception&status=open&limit=5)"
call GET "/v1/followups?kind=exception&status=open&limit=5" | subjects
echo
echo "== its open tasks (GET $api/v1/followups?kind=task&status=open)"
call GET "/v1/followups?kind=task&status=open" | subjects
echo
echo "== its newest notifications (GET $api/v1/notifications?limit=5)"
call GET "/v1/notifications?limit=5" | subjects
echo
echo "== live on its stream (GET $api/v1/stream): $(grep -c '^data:' .local/live.log || true) events; the date changes among them:"
grep '^data:' .local/live.log | grep '"kind":"notification"' | subjects | grep -v '^   followup/' \
    | grep 'Startdato' | head -n 3 || true

cat <<TEXT

Web inbox:    http://$FOLLOWUP_HTTP_ADDR/app/  (sign in with the prefilled demo / KP /
              admissions, studieadministration)
Tools:        export PATH="\$PWD/target/release:\$PATH"   (followupctl, followupd)
API:          TOKEN=\$(followupctl token --sub demo --inst KP --team admissions --team studieadministration)
              curl -H "Authorization: Bearer \$TOKEN" $api/v1/dashboard
API document: $api/openapi.json
Settings:     .local/env (followupctl and followupd read it in this directory)
More:         followupctl simulate day --transfers 200
TEXT

if [ -t 0 ]; then
    echo
    echo "followupd keeps running; Ctrl-C stops it."
    wait "$server"
fi
