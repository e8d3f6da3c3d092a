#!/usr/bin/env bash
# Set up everything this repository needs, at its root:
#   .venv        Python 3.8/3.9, jina 0.9.33 (requirements.txt), this package in editable mode
#   .venv-jina3  Python 3.10+, jina 3 (requirements-jina3.txt), this package in editable mode
# and, run as root, the system packages the container and browser tests use, when missing.
# jina 3 and jina 0.9.33 share the import name `jina`, so the two never share a venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

usage() {
    cat <<'EOF'
usage: scripts/setup.sh [--jina09 | --jina3] [--python09 PY] [--python3 PY] [--no-system]
       scripts/setup.sh PY              (= --jina09 --python09 PY, as before)
       scripts/setup.sh --jina3 [PY]    (= --jina3 --python3 PY, as before)

Makes both environments (default), or one:
  --jina09        only .venv: Python 3.8/3.9 (python3.9, python3.8 or python3 on PATH, else
                  pyenv's versions; or --python09 PY, or PYTHON=PY), jina 0.9.33
  --jina3         only .venv-jina3: Python 3.10+ (python3 on PATH; or --python3 PY, or
                  PYTHON3=PY), jina 3.34
  --no-system     never install system packages
  -h, --help      this text

Run as root, it first installs with apt-get, when missing, what the tests use:
podman buildah debootstrap iptables runc (the container tests) and chromium
chromium-driver (the browser tests of `serve`). Without them (or without root)
those tests skip and say why.

Then run every test suite: scripts/test.sh
EOF
}

want09=1
want3=1
no_system=0
py09="${PYTHON:-}"
py3="${PYTHON3:-}"
picked=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --jina09) picked=09; shift ;;
        --jina3) picked=3; shift
            # the old form: scripts/setup.sh --jina3 /path/to/python3.11
            if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then py3="$1"; shift; fi ;;
        --python09) [ $# -ge 2 ] || { echo "setup: --python09 needs an interpreter" >&2; exit 2; }
            py09="$2"; shift 2 ;;
        --python3) [ $# -ge 2 ] || { echo "setup: --python3 needs an interpreter" >&2; exit 2; }
            py3="$2"; shift 2 ;;
        --no-system) no_system=1; shift ;;
        -*) echo "setup: unknown option $1" >&2; usage >&2; exit 2 ;;
        *)  # the old form: scripts/setup.sh /path/to/python3.9
            py09="$1"; picked="${picked:-09}"; shift ;;
    esac
done
case "$picked" in 09) want3=0 ;; 3) want09=0 ;; esac

system_packages() {
    # command -> Debian package
    local missing=() cmd pkg
    for pair in podman:podman buildah:buildah debootstrap:debootstrap iptables:iptables \
                runc:runc chromium:chromium chromedriver:chromium-driver; do
        cmd="${pair%%:*}"; pkg="${pair#*:}"
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$no_system" = 1 ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "setup: not installing ${missing[*]} (needs root and apt-get; --no-system skips it);" \
             "the tests that need them will skip and say why" >&2
        return 0
    fi
    echo "setup: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

is_py() {  # is_py INTERPRETER MIN MAX: runs, and MIN <= version <= MAX ("3.8" "3.9")
    "$1" -c "import sys; v = sys.version_info[:2]; sys.exit(0 if $2 <= v <= $3 else 1)" >/dev/null 2>&1
}

find_python09() {
    local c exe
    for c in python3.9 python3.8 python3; do
        command -v "$c" >/dev/null 2>&1 && is_py "$(command -v "$c")" '(3, 8)' '(3, 9)' \
            && { command -v "$c"; return 0; }
    done
    local proot="${PYENV_ROOT:-}"
    [ -z "$proot" ] && command -v pyenv >/dev/null 2>&1 && proot="$(pyenv root)"
    [ -z "$proot" ] && proot="$HOME/.pyenv"
    for c in $(ls -d "$proot"/versions/3.9* "$proot"/versions/3.8* 2>/dev/null | sort -rV); do
        for exe in "$c"/bin/python3.9 "$c"/bin/python3.8; do
            [ -x "$exe" ] && is_py "$exe" '(3, 8)' '(3, 9)' && { echo "$exe"; return 0; }
        done
    done
    return 1
}

setup09() {
    local py="$py09"
    if [ -n "$py" ]; then
        is_py "$py" '(3, 8)' '(3, 9)' || { echo "setup: $py is not a runnable Python 3.8-3.9" >&2; exit 1; }
    else
        py="$(find_python09)" || {
            echo "setup: no Python 3.8-3.9 found on PATH or in pyenv; jina 0.9.33 needs one." >&2
            echo "       Install one (e.g. 'pyenv install 3.9') or name it: scripts/setup.sh --python09 /path/to/python3.9" >&2
            exit 1
        }
    fi
    echo "setup: using $py ($("$py" --version 2>&1)) for .venv"
    if [ -x .venv/bin/python ] && ! is_py .venv/bin/python '(3, 8)' '(3, 9)'; then
        echo "setup: .venv has the wrong Python; recreating it"
        rm -rf .venv
    fi
    [ -x .venv/bin/python ] || "$py" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade "pip<25" "setuptools<70" wheel
    .venv/bin/python -m pip install --quiet -r requirements.txt
    .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
    .venv/bin/python -c 'import jina, torch, torchvision, vseimageencoder; print("setup: .venv ok - jina", jina.__version__, "torch", torch.__version__, "torchvision", torchvision.__version__)'
}

setup3() {
    local py="${py3:-python3}"
    is_py "$py" '(3, 10)' '(3, 99)' || {
        echo "setup: $py is not a runnable Python 3.10+ (jina 3 needs one)" >&2
        echo "       name one: scripts/setup.sh --jina3 --python3 /path/to/python3.11" >&2
        exit 1
    }
    echo "setup: using $py ($("$py" --version 2>&1)) for .venv-jina3"
    if [ -x .venv-jina3/bin/python ] && ! is_py .venv-jina3/bin/python '(3, 10)' '(3, 99)'; then
        echo "setup: .venv-jina3 has the wrong Python; recreating it"
        rm -rf .venv-jina3
    fi
    [ -x .venv-jina3/bin/python ] || "$py" -m venv .venv-jina3
    .venv-jina3/bin/python -m pip install --quiet -r requirements-jina3.txt
    .venv-jina3/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
    # jina writes to ~/.cache/jina at import and would send telemetry: neither here.
    HOME="$(mktemp -d)" JINA_OPTOUT_TELEMETRY=1 JINA_HIDE_SURVEY=1 .venv-jina3/bin/python -c \
        'import jina, docarray, torch, torchvision, vseimageencoder.jina3; print("setup: .venv-jina3 ok - jina", jina.__version__, "docarray", docarray.__version__, "torch", torch.__version__, "torchvision", torchvision.__version__)'
}

system_packages
[ "$want09" = 1 ] && setup09
[ "$want3" = 1 ] && setup3
echo "setup: done; run the tests with scripts/test.sh"
