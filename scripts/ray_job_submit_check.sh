#!/usr/bin/env bash
# Runs the README's cluster line, exactly as written, against a local head started as the README
# says, then stops the head:
#
#     ray start --head
#     RAY_AUTH_MODE=token ray job submit --working-dir . -- labelmill run CONFIG --set ray.address=auto
#
# Usage: scripts/ray_job_submit_check.sh [CONFIG [--set key=value ...]]
#   CONFIG defaults to configs/demo.yaml; extra arguments are appended to the job's command,
#   e.g. `--set corpus.limit=20 --set output_uri=out/job-check` for a short check.
#
# Why RAY_AUTH_MODE=token: Ray 2.60's `ray start --head` turns token authentication on and
# writes the token to ~/.ray/auth_token; a client without RAY_AUTH_MODE=token fails with
# "AuthenticationError: ... Missing authentication token". With it, the client reads the token
# from that file (or from RAY_AUTH_TOKEN).
set -euo pipefail

cd "$(dirname "$0")/.."
CONFIG=${1:-configs/demo.yaml}
shift || true
# The head (and so the job's driver) must find `labelmill` and the models: run it from the venv.
export PATH="$PWD/.venv/bin:$PATH"
export LABELMILL_HOME=${LABELMILL_HOME:-$PWD/.cache/labelmill}
export RAY_USAGE_STATS_ENABLED=0

# A temp dir of its own: at exit this script stops the processes of *its* head only (`ray stop`
# would stop every Ray on the machine, other users' embedded ones included).
TEMP_DIR=$(mktemp -d /tmp/ray-jobcheck-XXXXXX)
descendants() { for child in $(pgrep -P "$1"); do echo "$child"; descendants "$child"; done; }
stop_head() {
    local roots pids=""
    roots=$(pgrep -f "$TEMP_DIR" || true)
    for pid in $roots; do pids="$pids $pid $(descendants "$pid")"; done
    [ -n "${pids// /}" ] && kill -9 $pids 2>/dev/null || true
}
trap stop_head EXIT

ray start --head --disable-usage-stats --temp-dir="$TEMP_DIR"

RAY_AUTH_MODE=token ray job submit --working-dir . -- labelmill run "$CONFIG" --set ray.address=auto "$@"
