# syntax=docker/dockerfile:1
# ws-counter worker image: a virtualenv built in one stage, copied into a
# clean runtime stage that runs as a non-root numeric user.
#
# Pin the base image by digest in production, e.g.
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:... .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# checkov:skip=CKV_DOCKER_7: the tag is in PYTHON_IMAGE above, which checkov does not expand

FROM ${PYTHON_IMAGE} AS build
# 1: the compiled build (mypyc: the hot modules as C extensions, setup.py); 0: pure
# Python, the same behaviour, no compiler needed.
ARG WS_COUNTER_COMPILE=1
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The C compiler for the compiled build, in this stage only: the runtime stage
# gets the built extensions, never the compiler. The official image has Python's
# headers; an image whose Python is Debian's needs python3-dev for them. The
# versions are those of the base image's Debian release, which its tag pins.
# hadolint ignore=DL3008
RUN if [ "$WS_COUNTER_COMPILE" = 1 ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gcc libc6-dev \
        && include=$(python -c 'import sysconfig; print(sysconfig.get_path("include"))') \
        && { [ -f "$include/Python.h" ] || apt-get install -y --no-install-recommends python3-dev; } \
        && rm -rf /var/lib/apt/lists/*; \
    fi
RUN python -m venv /opt/venv && python -m venv /opt/build
# Dependencies first, so that a code change does not reinstall them: exactly
# the versions and hashes of the lock (scripts/dev.sh lock), as CI tests them.
# The build tools (mypy, which carries mypyc, and setuptools) go in a virtualenv
# of their own that the runtime stage leaves behind; it holds the dependencies
# too, since mypyc type-checks the code against them.
COPY requirements/run.txt requirements/build.txt requirements/
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements/run.txt \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes --no-deps \
        -r requirements/run.txt -r requirements/build.txt
COPY pyproject.toml setup.py README.md ./
COPY ws_counter/ ws_counter/
COPY worker/ worker/
COPY tools/ tools/
COPY ws_counter_client/ ws_counter_client/
# Without build isolation: the build uses the locked tools above, not whatever
# an isolated build would fetch. The worker logs which build it runs ("listening").
RUN WS_COUNTER_COMPILE="$WS_COUNTER_COMPILE" /opt/build/bin/pip wheel --no-cache-dir \
        --no-build-isolation --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps /wheels/*.whl \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ws-counter" \
      org.opencontainers.image.description="Horizontally scaled WebSocket counter worker"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WS_HOST=0.0.0.0 \
    WS_PORT=8000
COPY --from=build /opt/venv /opt/venv
# Where compose's sharded load test (loadtest-shard) writes its reports: a new named
# volume takes this folder's owner, so the non-root user below may write there.
RUN mkdir /reports && chown 10001:10001 /reports
# A numeric user, so that Kubernetes can verify runAsNonRoot without /etc/passwd.
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["ws-counter", "healthcheck"]
# Exec form: the worker is PID 1 and receives SIGTERM itself to drain.
ENTRYPOINT ["ws-counter"]
CMD ["serve"]
