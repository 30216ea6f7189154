#!/usr/bin/env bash
# The README as a test: runs every command of README.md's shell blocks (fenced `sh`), as
# written and in order, in one fresh shell with nothing exported (as a newcomer's terminal
# would be), and fails on a command that exits non-zero or prints an error. `deploy/run.sh`
# (the README's first command) sets the demo system up; `deploy/test.sh` is skipped (it is
# what runs this test). A command marked `# until Ctrl-C` (a server, a live stream) is started
# in the background, must still be running (or have ended cleanly) a few seconds later, and
# is stopped at the end, when its output is checked too.
#
# `deploy/readme-test.sh [FILE]` tests another Markdown file the same way.
# Ends with one summary line; exit status 1 when any command failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${1:-}" = "--run" ]; then
    # The runner, in the fresh shell: commands come NUL-separated on fd 3. The shell's
    # options are a terminal's defaults, not this script's.
    set +euo pipefail
    work=$2
    # What counts as an error in a command's output: followupctl's and bash's error lines,
    # a log line at level ERROR, a panic, curl's own errors and a problem document (an HTTP
    # error answer) that curl printed.
    errors='^followupctl: |^error(\[|:)|^Error: |[[:space:]]ERROR[[:space:]]|panicked at|^curl: \([0-9]+\)|"status": ?[45][0-9][0-9]|command not found|: line [0-9]+: '
    n=0
    background=()
    check() {
        # check N STATUS: reports command N with its exit status and its output.
        local i=$1 status=$2 verdict=ok
        if [ "$status" != 0 ]; then
            verdict="FAIL (exit $status)"
        elif grep -Eq "$errors" "$work/out.$i"; then
            verdict="FAIL (printed an error)"
        fi
        if [ "$verdict" = ok ]; then
            printf 'ok    %s\n' "$(head -n 1 "$work/cmd.$i")"
            echo ok >>"$work/verdicts"
        else
            printf '%s  %s\n' "$verdict" "$(cat "$work/cmd.$i")"
            tail -n 20 "$work/out.$i" | sed 's/^/      | /'
            echo fail >>"$work/verdicts"
        fi
    }
    while IFS= read -r -d '' command <&3; do
        n=$((n + 1))
        printf '%s\n' "$command" >"$work/cmd.$n"
        case "$command" in
        deploy/test.sh*)
            printf 'skip  %s   (it runs this test)\n' "$command"
            continue
            ;;
        esac
        if [[ "$command" == *"# "*"until Ctrl-C"* ]]; then
            { eval "$command"; } >"$work/out.$n" 2>&1 </dev/null &
            pid=$!
            sleep 5
            if kill -0 "$pid" 2>/dev/null; then
                printf 'runs  %s\n' "$(head -n 1 "$work/cmd.$n")"
                background+=("$n:$pid")
            else
                status=0
                wait "$pid" || status=$?
                check "$n" "$status"
            fi
            continue
        fi
        status=0
        { eval "$command"; } >"$work/out.$n" 2>&1 </dev/null || status=$?
        check "$n" "$status"
    done 3<"$work/commands"
    for entry in "${background[@]}"; do
        i=${entry%%:*}
        pid=${entry#*:}
        # Stopped as a terminal's Ctrl-C or a service manager would (a background job of a
        # script ignores SIGINT, so SIGTERM); a server drains and exits cleanly.
        pkill -TERM -P "$pid" 2>/dev/null
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        check "$i" 0
    done
    exit 0
fi

readme=${1:-README.md}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The commands of the `sh` blocks: a line ending in a backslash goes on on the next line;
# lines that are only a comment are left out.
awk '
    /^```sh[[:space:]]*$/ { inblock = 1; next }
    /^```/ { inblock = 0; next }
    !inblock { next }
    {
        if (command == "" && $0 ~ /^[[:space:]]*(#.*)?$/) next
        command = (command == "") ? $0 : command "\n" $0
        if ($0 ~ /\\$/) next
        printf "%s%c", command, 0
        command = ""
    }
' "$readme" >"$work/commands"
: >"$work/verdicts"

echo "== $readme: $(tr -cd '\0' <"$work/commands" | wc -c) commands, run as written"
status=0
env -i HOME="$HOME" PATH="$PATH" USER="${USER:-$(id -un)}" LANG=C.UTF-8 TERM=dumb \
    timeout 1800 bash deploy/readme-test.sh --run "$work" || status=$?
passed=$(grep -c '^ok$' "$work/verdicts" || true)
failed=$(grep -c '^fail$' "$work/verdicts" || true)
echo "readme: $passed commands passed, $failed failed"
[ "$status" = 0 ] && [ "$failed" = 0 ]
