#!/usr/bin/env bash
# Run the test suite in both environments, side by side: `pytest tests` in .venv (jina 0.9.33)
# and in .venv-jina3 (jina 3). Markers choose (tests/conftest.py): a test marked jina09 or jina3 runs
# only where that jina is installed, every other test (the jina-free core, its commands, serve,
# the core docs) in both. Both run to the end whatever the other does; the exit status is
# non-zero when either failed.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

usage() {
    cat <<'EOF'
usage: scripts/test.sh [--jina09 | --jina3] [--serial] [PYTEST ARGS...]

Runs (environments made by scripts/setup.sh):
  .venv/bin/python -m pytest tests         # jina 0.9.33 (Python 3.9)
  .venv-jina3/bin/python -m pytest tests   # jina 3 (Python 3.10+)
Each runs the jina-free tests and those marked for its jina (jina09 / jina3); the others are
deselected. In .venv-jina3 tests/conftest.py loads tests/jina3/plugin.py (private HOME,
telemetry off, the netguard audit hook).
  --jina09 / --jina3   only one of them
  --serial             one after the other (default: both at once, their lines prefixed
                       [jina09] and [jina3]; the two share the cores and finish in about
                       the time of the longer one)
  PYTEST ARGS          passed to both, e.g.  scripts/test.sh -x -k readme
                       or  scripts/test.sh --durations=15
  -h, --help           this text

Container tests need podman, debootstrap, runc, iptables and root; browser tests need
chromium and chromium-driver (scripts/setup.sh installs them as root). Without them those
tests skip and say why (pytest's -ra summary at the end).
EOF
}

run09=1
run3=1
serial=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --jina09) run3=0; shift ;;
        --jina3) run09=0; shift ;;
        --serial) serial=1; shift ;;
        *) break ;;
    esac
done

status=0
for venv in .venv .venv-jina3; do
    [ "$venv" = .venv ] && [ "$run09" = 0 ] && continue
    [ "$venv" = .venv-jina3 ] && [ "$run3" = 0 ] && continue
    if [ ! -x "$venv/bin/python" ]; then
        echo "test: $venv is missing; make it with scripts/setup.sh" >&2
        status=1
        continue
    fi
done
[ "$status" = 0 ] || exit "$status"

# A full disk fails tests far from the cause (an image that cannot be saved, a conftest that
# cannot make its folder); say it first. Passed tests' temporary folders go at their teardown
# (pytest.ini), so a run needs about 2 GB there at once (docs/development.md, "Disk").
tmp_root="${TMPDIR:-/tmp}"
free_gb="$(df -Pk "$tmp_root" 2>/dev/null | awk 'NR == 2 {print int($4 / 1048576)}')"
if [ -n "$free_gb" ] && [ "$free_gb" -lt 5 ]; then
    echo "test: warning: only ${free_gb} GB free in $tmp_root; each suite writes up to about 2 GB" \
         "there at once, and the container tests build images in /var/tmp/vseimageencoder-ctr" >&2
fi

suite() {  # suite LABEL VENV PYTEST-ARGS...: one environment's run, its lines prefixed in parallel mode
    local label="$1" venv="$2"
    shift 2
    if [ "$serial" = 1 ] || [ "$run09" = 0 ] || [ "$run3" = 0 ]; then
        "$venv/bin/python" -m pytest tests "$@"
    else
        "$venv/bin/python" -m pytest tests "$@" 2>&1 | sed -u "s/^/[$label] /"
    fi
}

start=$SECONDS
if [ "$serial" = 1 ] || [ "$run09" = 0 ] || [ "$run3" = 0 ]; then
    if [ "$run09" = 1 ]; then
        echo "test: jina 0.9.33 suite (.venv)"
        suite jina09 .venv "$@" || status=1
    fi
    if [ "$run3" = 1 ]; then
        echo "test: jina 3 suite (.venv-jina3)"
        suite jina3 .venv-jina3 "$@" || status=1
    fi
else
    echo "test: the jina 0.9.33 suite (.venv, lines [jina09]) and the jina 3 suite (.venv-jina3," \
         "lines [jina3]) side by side"
    suite jina09 .venv "$@" & p09=$!
    suite jina3 .venv-jina3 "$@" & p3=$!
    trap 'kill "$p09" "$p3" 2>/dev/null' INT TERM
    wait "$p09" || { status=1; echo "test: the jina 0.9.33 suite failed" >&2; }
    wait "$p3" || { status=1; echo "test: the jina 3 suite failed" >&2; }
fi
echo "test: done in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s, status $status"
exit "$status"
