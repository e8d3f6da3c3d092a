#!/usr/bin/env bash
# Create .venv at the repository root with a Python 3.8-3.9 interpreter (jina 0.9.33
# refuses 3.10+), install the pinned requirements and this package in editable mode.
#
#   scripts/setup.sh                 # find an interpreter on PATH, then in pyenv
#   scripts/setup.sh /path/python3.9 # or: PYTHON=/path/python3.9 scripts/setup.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

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
