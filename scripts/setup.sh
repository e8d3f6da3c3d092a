#!/usr/bin/env bash
# Create .venv at the repository root with a Python 3.8-3.9 interpreter (jina 0.9.33
# refuses 3.10+), install the pinned requirements and this package in editable mode.
#
#   scripts/setup.sh                 # find an interpreter on PATH, then in pyenv
#   scripts/setup.sh /path/python3.9 # or: PYTHON=/path/python3.9 scripts/setup.sh
#
# The jina 3 form makes .venv-jina3 instead, with a Python 3.10+ (python3 on PATH unless
# named), requirements-jina3.txt and this package: the jina-free core and the jina 3
# Executors (vseimageencoder.jina3). jina 3 and jina 0.9.33 share the import name `jina`,
# so the two never share a venv.
#
#   scripts/setup.sh --jina3 [/path/python3.11]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ "${1:-}" = "--jina3" ]; then
    py="${2:-${PYTHON:-python3}}"
    "$py" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 10) else 1)' >/dev/null 2>&1 || {
        echo "setup: $py is not a runnable Python 3.10+ (jina 3's form needs one)" >&2
        echo "       name one: scripts/setup.sh --jina3 /path/to/python3.11" >&2
        exit 1
    }
    echo "setup: using $py ($("$py" --version 2>&1)) for .venv-jina3"
    if [ -x .venv-jina3/bin/python ] && ! .venv-jina3/bin/python -c \
            'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 10) else 1)' >/dev/null 2>&1; then
        echo "setup: .venv-jina3 has the wrong Python; recreating it"
        rm -rf .venv-jina3
    fi
    [ -x .venv-jina3/bin/python ] || "$py" -m venv .venv-jina3
    .venv-jina3/bin/python -m pip install --quiet -r requirements-jina3.txt
    .venv-jina3/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
    # jina writes to ~/.cache/jina at import and would send telemetry: neither here.
    HOME="$(mktemp -d)" JINA_OPTOUT_TELEMETRY=1 JINA_HIDE_SURVEY=1 .venv-jina3/bin/python -c \
        'import jina, docarray, torch, torchvision, vseimageencoder.jina3; print("setup: ok - jina", jina.__version__, "docarray", docarray.__version__, "torch", torch.__version__, "torchvision", torchvision.__version__)'
    exit 0
fi

usable() {  # prints the interpreter if it runs and is 3.8-3.9
    local py="$1"
    "$py" -c 'import sys; sys.exit(0 if (3, 8) <= sys.version_info[:2] <= (3, 9) else 1)' \
        >/dev/null 2>&1 && echo "$py"
}

find_python() {
    local c
    for c in python3.9 python3.8 python3; do
        command -v "$c" >/dev/null 2>&1 && usable "$(command -v "$c")" && return 0
    done
    local proot="${PYENV_ROOT:-}"
    [ -z "$proot" ] && command -v pyenv >/dev/null 2>&1 && proot="$(pyenv root)"
    [ -z "$proot" ] && proot="$HOME/.pyenv"
    for c in $(ls -d "$proot"/versions/3.9* "$proot"/versions/3.8* 2>/dev/null | sort -rV); do
        for exe in "$c"/bin/python3.9 "$c"/bin/python3.8; do
            [ -x "$exe" ] && usable "$exe" && return 0
        done
    done
    return 1
}

py="${1:-${PYTHON:-}}"
if [ -n "$py" ]; then
    usable "$py" >/dev/null || { echo "setup: $py is not a runnable Python 3.8-3.9" >&2; exit 1; }
else
    py="$(find_python)" || {
        echo "setup: no Python 3.8-3.9 found on PATH or in pyenv; jina 0.9.33 needs one." >&2
        echo "       Install one (e.g. 'pyenv install 3.9') or name it: scripts/setup.sh /path/to/python3.9" >&2
        exit 1
    }
fi
echo "setup: using $py ($("$py" --version 2>&1))"

if [ -x .venv/bin/python ] && ! usable .venv/bin/python >/dev/null; then
    echo "setup: .venv has the wrong Python; recreating it"
    rm -rf .venv
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade "pip<25" "setuptools<70" wheel
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
.venv/bin/python -c 'import jina, torch, torchvision, vseimageencoder; print("setup: ok - jina", jina.__version__, "torch", torch.__version__, "torchvision", torchvision.__version__)'
