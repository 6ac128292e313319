# syntax=docker/dockerfile:1
# ws-counter worker image: a virtualenv built in one stage, copied into a
# clean runtime stage that runs as a non-root numeric user.
#
# Pin the base image by digest in production, e.g.
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:... .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# checkov:skip=CKV_DOCKER_7: the tag is in PYTHON_IMAGE above, which checkov does not expand

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first, so that a code change does not reinstall them: exactly
# the versions and hashes of the lock (scripts/dev.sh lock), as CI tests them.
COPY requirements/run.txt requirements/
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements/run.txt
COPY pyproject.toml README.md ./
COPY ws_counter/ ws_counter/
COPY worker/ worker/
COPY tools/ tools/
COPY ws_counter_client/ ws_counter_client/
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
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
