#!/usr/bin/env bash
# Set up ws-counter on a Debian machine and run it: system packages when
# missing, a virtualenv with the project, then the demo or the whole test suite.
#
#   bash scripts/dev.sh demo [ws-counter demo flags]   local cluster + load test
#   bash scripts/dev.sh test [pytest args]             lint, types and every test
#   bash scripts/dev.sh test-compiled [pytest args]    every test again, on a compiled
#                                                      copy of the checkout (mypyc)
#   bash scripts/dev.sh check [pytest args]            the fast loop: lint, types,
#                                                      contracts and the unit tests
#   bash scripts/dev.sh lock                           re-resolve requirements/*.txt
#                                                      after a change to pyproject.toml
#   bash scripts/dev.sh upgrade                        newest allowed versions; the full
#                                                      suite on them; commit when green
#   bash scripts/dev.sh compile                        build the compiled modules in place
#                                                      (mypyc; needs a C compiler)
#   bash scripts/dev.sh pure                           remove them: pure Python again
#
# Every install takes the exact versions and hashes in requirements/*.txt (the
# lock), so that CI, the demo, the image and the wheel test run what was tested.
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

# install_locked VENV LOCK...: exactly the versions and hashes the lock files
# name; pip refuses anything else.
install_locked() {
    local venv=$1
    shift
    local args=() lock
    for lock in "$@"; do args+=(-r "$lock"); done
    "$venv/bin/python" -m pip install -q --require-hashes --no-deps "${args[@]}"
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
    local test_stamp=$VENV/.ws-counter-test
    if [[ -f $test_stamp && $test_stamp -nt pyproject.toml && $test_stamp -nt requirements/test.txt ]]; then
        return  # the test install holds everything the demo needs too
    fi
    if [[ ! -f $stamp || pyproject.toml -nt $stamp || requirements/$what.txt -nt $stamp ]]; then
        say "installing ws-counter and the locked requirements/$what.txt into $VENV"
        install_locked "$VENV" "requirements/$what.txt"
        "$VENV/bin/python" -m pip install -q --no-deps -e .
        "$VENV/bin/python" -m pip check >/dev/null
        touch "$stamp"
    fi
}

# checkov, the scanner tests/test_deploy_static.py runs over k8s/ and the
# Dockerfile, in a virtualenv of its own: its pins (packaging, ...) would fight
# the project's.
ensure_checkov() {
    local venv=$VENV-checkov
    local stamp=$venv/.ws-counter-checkov
    if [[ ! -f $stamp || requirements/checkov.txt -nt $stamp ]]; then
        say "installing the locked requirements/checkov.txt into $venv"
        [[ -x $venv/bin/python ]] || "$PYTHON" -m venv "$venv"
        install_locked "$venv" requirements/checkov.txt
        touch "$stamp"
    fi
    export CHECKOV=$PWD/$venv/bin/checkov
}

# compile_locks DIR [uv flags]: resolve pyproject.toml (and checkov.in, build.in) into
# DIR/{run,test,checkov,build}.txt: exact versions with hashes, for Python 3.11 and
# later on every platform. Without --upgrade, pins the lock already holds stay.
compile_locks() {
    local out=$1
    shift
    local uv=$VENV/bin/uv common=(--universal --python-version 3.11 --generate-hashes --quiet)
    export UV_CUSTOM_COMPILE_COMMAND="bash scripts/dev.sh lock (or upgrade)"
    local name
    for name in run test checkov build; do
        [[ -f requirements/$name.txt ]] && cp "requirements/$name.txt" "$out/$name.txt"
    done
    "$uv" pip compile "${common[@]}" "$@" --extra test pyproject.toml -o "$out/test.txt"
    # The run lock within the test lock: the demo and the image run what was tested.
    "$uv" pip compile "${common[@]}" "$@" -c "$out/test.txt" pyproject.toml -o "$out/run.txt"
    sed -i "s|$out/|requirements/|" "$out/run.txt"
    "$uv" pip compile "${common[@]}" "$@" requirements/checkov.in -o "$out/checkov.txt"
    # The build tools within the test lock too: the image compiles with CI's mypy.
    "$uv" pip compile "${common[@]}" "$@" -c "$out/test.txt" requirements/build.in -o "$out/build.txt"
    sed -i "s|$out/|requirements/|" "$out/build.txt"
}

locks_differ() {
    local dir=$1 name
    for name in run test checkov build; do
        cmp -s "$dir/$name.txt" "requirements/$name.txt" || return 0
    done
    return 1
}

# The pins that changed, one "name old -> new" line each.
lock_changes() {
    diff <(grep -ho '^[A-Za-z0-9._-]*==[^ ]*' requirements/*.txt | sort -u) \
        <(grep -ho '^[A-Za-z0-9._-]*==[^ ]*' "$1"/*.txt | sort -u) | sed -n 's/^[<>] /  /p' || true
}

# uv resolves the lock; it comes from the lock itself once there is one.
ensure_uv() {
    if [[ -f requirements/test.txt ]]; then ensure_venv test; fi
    if [[ ! -x $VENV/bin/uv ]]; then
        [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q uv
    fi
}

lock() {
    ensure_uv
    local new
    new=$(mktemp -d)
    compile_locks "$new"
    if locks_differ "$new"; then
        lock_changes "$new"
        cp "$new"/run.txt "$new"/test.txt "$new"/checkov.txt "$new"/build.txt requirements/
        say "requirements/ re-resolved: run 'bash scripts/dev.sh test', then commit it"
    else
        say "requirements/ already matches pyproject.toml"
    fi
    rm -rf "$new"
}

# upgrade: the newest versions pyproject.toml allows, the whole suite in a
# fresh virtualenv on them, and a commit of requirements/ only when it passes.
upgrade() {
    ensure_uv
    if [[ -n $(git status --porcelain -- requirements/) ]]; then
        echo "requirements/ has uncommitted changes: commit or restore them first" >&2
        exit 1
    fi
    local new
    new=$(mktemp -d)
    compile_locks "$new" --upgrade
    if ! locks_differ "$new"; then
        say "nothing to upgrade: the lock already holds the newest allowed versions"
        rm -rf "$new"
        return
    fi
    say "new pins:"
    lock_changes "$new"
    cp "$new"/run.txt "$new"/test.txt "$new"/checkov.txt "$new"/build.txt requirements/
    rm -rf "$new"
    local trial=${VENV}-upgrade
    rm -rf "$trial" "$trial-checkov"
    say "the whole suite on the new pins, in a fresh $trial"
    if VENV=$trial bash "$0" test; then
        git commit -q -m "Lock: upgrade pinned dependencies" \
            -m "bash scripts/dev.sh upgrade: the whole suite passed on the new pins." \
            -- requirements/run.txt requirements/test.txt requirements/checkov.txt requirements/build.txt
        say "committed the new lock: $(git log -1 --format='%h %s')"
        rm -rf "$trial" "$trial-checkov"
    else
        git checkout -q -- requirements/
        echo "the suite failed on the new pins; the lock is unchanged ($trial kept to look into)" >&2
        exit 1
    fi
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
    "$VENV/bin/ruff" check worker ws_counter_client tools tests bench faults setup.py
    "$VENV/bin/ruff" format --check worker ws_counter_client tools tests bench faults setup.py
    say "mypy --strict (worker, ws_counter_client, tools, bench, faults, tests, setup.py)"
    "$VENV/bin/mypy"
    say "import contracts (lint-imports)"
    "$VENV/bin/lint-imports"
    say "dead code (vulture, with tests as users of the code)"
    local dead
    dead=$("$VENV/bin/vulture" | grep -v '^tests/' || true)
    if [[ -n $dead ]]; then
        printf '%s\n' "$dead" >&2
        exit 1
    fi
}

run_tests() {
    static_checks
    say "pytest"
    # The 15 slowest tests, so that a test that grows shows in every run.
    "$VENV/bin/pytest" --durations=15 "${PYTEST_EXTRA[@]}" "$@"
}

# The suite on the compiled build: a copy of the checkout with the listed modules
# compiled (bench.builds.compiled_copy), first on every path, the tests' children
# included (PYTHONPATH; PYTHONSAFEPATH keeps a child's working folder off it). The
# static checks read the same source as in the pure run and are not repeated.
run_tests_compiled() {
    local copy venv=$PWD/$VENV
    copy=$(mktemp -d)/ws-counter
    say "a compiled copy of the checkout in $copy (mypyc)"
    "$VENV/bin/python" -c 'import sys
from pathlib import Path
from bench.builds import check_compiled, compiled_copy
check_compiled(compiled_copy(Path(sys.argv[1])))' "$copy"
    say "pytest on the compiled build"
    cd "$copy"
    PYTHONPATH=$copy PYTHONSAFEPATH=1 "$venv/bin/pytest" --durations=15 "${PYTEST_EXTRA[@]}" "$@"
}

# The compiled build's extensions, built in place beside their Python source.
remove_compiled() {
    find worker ws_counter -name '*.so' -delete
    rm -rf build
}

usage() {
    echo "usage:" >&2
    sed -n '5,17p' "$0" | sed 's/^# \{0,1\}/  /' >&2
    sed -n '22p' "$0" | sed 's/^# \{0,1\}//' >&2
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
    test-compiled)
        ensure_system
        ensure_test_system
        ensure_venv test
        ensure_checkov
        prepare_containers
        run_tests_compiled "$@"
        ;;
    lock) lock ;;
    upgrade) upgrade ;;
    compile)
        ensure_venv test
        remove_compiled
        say "compiling the modules pyproject.toml lists under [tool.ws_counter] (mypyc)"
        WS_COUNTER_COMPILE=1 "$VENV/bin/python" setup.py -q build_ext --inplace
        ;;
    pure) remove_compiled ;;
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
