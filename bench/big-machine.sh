#!/usr/bin/env bash
# The scale benchmark on an offline many-core machine, from the bundle that
# ../shared/BIG-MACHINE.md describes (.big/: wheels for its Python, and a
# redis-server with its libraries). Anywhere else it runs with what is installed.
#
#   bash bench/big-machine.sh [python -m bench.scale flags]
#
# Results go to $OUT (default bench/results): scale.json, scale.png, scale.log.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [[ -d .big ]]; then
    export PATH=$PWD/.big/bin:$PATH
    if ! "$PYTHON" -c 'import websockets, redis, hiredis, orjson, jwt, hdrh' 2>/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .big/whl/*.whl
        export PYTHONPATH=/tmp/site:$PWD
    fi
fi
{
    echo "cores: $(nproc), open files: $(ulimit -n) soft / $(ulimit -Hn) hard, $("$PYTHON" --version)"
    "$PYTHON" -m bench.scale --out "$OUT" "$@"
} 2>&1 | tee "$OUT/scale.log"
