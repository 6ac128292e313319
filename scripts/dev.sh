#!/usr/bin/env bash
# Set up ws-counter on a Debian machine and run it: system packages when
# missing, a virtualenv with the project, then the demo or the whole test suite.
#
#   bash scripts/dev.sh demo [ws-counter demo flags]   local cluster + load test
#   bash scripts/dev.sh test [pytest args]             lint, types and every test
#   bash scripts/dev.sh check [pytest args]            the fast loop: lint, types,
#                                                      contracts and the unit tests
#
# Settings: VENV (default .venv), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
APT_UPDATED=0

say() { printf '==> %s\n' "$*"; }

apt_install() {
    local runner=()
    if [[ $EUID -ne 0 ]]; then
        if command -v sudo >/dev/null; then runner=(sudo); else
            echo "missing Debian packages: $*; install them as root: apt-get install -y $*" >&2
            exit 1
        fi
    fi
    if [[ $APT_UPDATED == 0 ]]; then
        "${runner[@]}" apt-get update -q
        APT_UPDATED=1
    fi
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive "${runner[@]}" apt-get install -y -q --no-install-recommends "$@"
}

# "command:package" pairs; a package is installed when its command is missing.
ensure_commands() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
}

ensure_system() {
    ensure_commands redis-server:redis-server redis-cli:redis-tools haproxy:haproxy
    if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3-venv; fi
}

# The browser tests drive Debian's Chromium (Playwright cannot download one here);
# the README's curl examples are run as written; the monitoring tests run a real
# Prometheus and promtool; the TLS tests make certificates with openssl.
ensure_test_system() {
    ensure_commands chromium:chromium curl:curl ip:iproute2 iptables:iptables \
        prometheus:prometheus promtool:prometheus openssl:openssl
}

# ensure_venv run|test: the project with what running it needs (the demo), or
# with the test tools too (browsers' driver, linters, kubectl, ...).
ensure_venv() {
    local what=$1
    if [[ ! -x $VENV/bin/python ]]; then
        say "creating virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp=$VENV/.ws-counter-$what
    if [[ -f $VENV/.ws-counter-test && $VENV/.ws-counter-test -nt pyproject.toml ]]; then
        return  # the test install holds everything the demo needs too
    fi
    if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        if [[ $what == test ]]; then
            say "installing ws-counter and its test tools into $VENV"
            "$VENV/bin/python" -m pip install -q -e '.[test]'
        else
            say "installing ws-counter into $VENV"
            "$VENV/bin/python" -m pip install -q -e .
        fi
        touch "$stamp"
    fi
}

# checkov, the scanner tests/test_deploy_static.py runs over k8s/ and the
# Dockerfile, in a virtualenv of its own: its pins (packaging, ...) would fight
# the project's.
ensure_checkov() {
    local venv=$VENV-checkov
    if [[ ! -x $venv/bin/checkov ]]; then
        say "installing checkov into $venv"
        "$PYTHON" -m venv "$venv"
        "$venv/bin/python" -m pip install -q 'checkov>=3.2,<4'
    fi
    export CHECKOV=$PWD/$venv/bin/checkov
}

# Base images the Dockerfile, docker-compose.yml and the container test name.
container_images() {
    sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile
    sed -n 's/^ *image: *\([a-z0-9._/-]*:[a-z0-9._-]*\).*/\1/p' docker-compose.yml |
        grep -v -e '^ws-counter:' -e '^prom/'  # the monitoring profile: no stand-in, not tested in containers
    sed -n 's/^NGINX_IMAGE = "\(.*\)"$/\1/p' tests/test_containers.py
}

# The container test runs docker-compose.yml under podman-compose. Where no
# registry is reachable, standin-images.sh (found beside the checkout, or named
# by STANDIN_IMAGES) installs podman and builds local stand-ins for the base
# images. Without either, the test is left out, loudly; WS_REQUIRE_CONTAINERS=1
# (set by CI) makes that an error instead.
PYTEST_EXTRA=()
prepare_containers() {
    local candidate standin=${STANDIN_IMAGES:-}
    if [[ -z $standin ]]; then
        for candidate in ../shared/containers/standin-images.sh /work/shared/containers/standin-images.sh; do
            if [[ -f $candidate ]]; then standin=$candidate; break; fi
        done
    fi
    if [[ -n $standin ]]; then
        say "preparing podman and base images with $standin"
        # shellcheck disable=SC2046  # one image name per line
        bash "$standin" $(container_images)
    elif ! command -v podman-compose >/dev/null; then
        if [[ ${WS_REQUIRE_CONTAINERS:-0} == 1 ]]; then
            echo "container test required but neither podman-compose nor standin-images.sh is here" >&2
            exit 1
        fi
        say "NOT RUNNING the container test: install podman and podman-compose to run it"
        PYTEST_EXTRA=(-m "not containers")
    fi
}

static_checks() {
    say "ruff (lint and format)"
    "$VENV/bin/ruff" check worker ws_counter_client tools tests bench faults
    "$VENV/bin/ruff" format --check worker ws_counter_client tools tests bench faults
    say "mypy --strict (worker, ws_counter_client, tools, bench, faults, tests)"
    "$VENV/bin/mypy"
    say "import contracts (lint-imports)"
    "$VENV/bin/lint-imports"
}

run_tests() {
    static_checks
    say "pytest"
    "$VENV/bin/pytest" "${PYTEST_EXTRA[@]}" "$@"
}

usage() {
    echo "usage:" >&2
    sed -n '5,8p' "$0" | sed 's/^# \{0,1\}/  /' >&2
    sed -n '10p' "$0" | sed 's/^# \{0,1\}//' >&2
}

main() {
    local command=${1:-}
    shift || true
    case $command in
    demo)
        ensure_system
        ensure_venv run
        exec "$VENV/bin/ws-counter" demo "$@"
        ;;
    test)
        ensure_system
        ensure_test_system
        ensure_venv test
        ensure_checkov
        prepare_containers
        run_tests "$@"
        ;;
    check)
        ensure_venv test
        static_checks
        say "unit tests (pytest -m unit)"
        "$VENV/bin/pytest" -m unit -q "$@"
        ;;
    *)
        if [[ -n $command ]]; then echo "scripts/dev.sh: no command '$command'" >&2; fi
        usage
        exit 2
        ;;
    esac
}

main "$@"
