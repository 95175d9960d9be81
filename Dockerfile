# syntax=docker/dockerfile:1
#
# The nexus-bot image: `docker build -t nexus-bot .` (BuildKit, the default since
# Docker 23: the runtime stage bind-mounts the wheels instead of copying them).
# Not built in CI (no Docker daemon there): tests/unit/test_dockerfile.py checks
# this file's invariants and tests/scenario/test_wheel_install.py repeats its
# steps without Docker.
#
# Both stages use the same base so the wheels built in one match the interpreter
# of the other. Pinned by patch version and by the digest of its multi-platform
# index (amd64 and arm64 alike): a rebuild gets the same Debian and Python, and a
# bump is a reviewed change. To move on, update tag and digest together in both
# FROM lines (`docker buildx imagetools inspect python:3.11.X-slim-bookworm`
# prints the index digest).

FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS build

WORKDIR /src
# Only what the wheel is made of: pyproject reads README.md as the long description;
# the migrations are package data inside bot/.
COPY pyproject.toml README.md ./
COPY bot/ ./bot/
# The project's wheel plus one for every dependency. --only-binary: the slim base
# has no compiler, and a dependency that lost its wheel for this platform should
# fail the build here, loudly, rather than be compiled from source.
RUN python -m pip wheel --no-cache-dir --disable-pip-version-check \
        --only-binary=:all: --wheel-dir /wheels .


FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS runtime

# Label only: the wheel carries its own version (keep this equal to pyproject's,
# tests/unit/test_dockerfile.py checks it). The repository has no canonical URL
# recorded anywhere, so the release build passes it:
#   --build-arg SOURCE_URL=$(git remote get-url origin) --build-arg REVISION=$(git rev-parse HEAD)
ARG VERSION=0.1.0
ARG SOURCE_URL=""
ARG REVISION=""
LABEL org.opencontainers.image.title="nexus-bot" \
      org.opencontainers.image.description="Slack incident bot that runs the NEXUS SSOT risk playbooks" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# git: the revert and restore actions shell out to it. ca-certificates: git talks
# HTTPS to GitHub. No recommends (no ssh client: remotes are https://, set
# GITHUB_GIT_URL=ssh://… only with an image that adds openssh-client).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric UID/GID: Kubernetes' runAsNonRoot can only verify a numeric
# USER, and deploy/kubernetes runs the pod as 10001:10001 with fsGroup 10001.
# The data directory is created and owned here, before VOLUME, so a fresh volume
# starts with that ownership.
RUN groupadd --system --gid 10001 nexus \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/nexus-bot --shell /usr/sbin/nologin nexus \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/nexus-bot /var/lib/nexus-bot/work

# A venv without pip: the base image's pip installs into it (--python), from the
# wheels alone (--no-index: nothing is resolved or downloaded twice). The wheels
# are bind-mounted, so they never become a layer. pip compiles the bytecode now,
# as root: at run time the root filesystem may be read-only and
# PYTHONDONTWRITEBYTECODE keeps Python from trying.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/nexus-bot \
    && python -m pip --python /opt/nexus-bot/bin/python install --no-cache-dir \
        --disable-pip-version-check --no-index --find-links=/wheels nexus-incident-bot

# The shipped configuration, owned by root: the bot reads it and cannot change it.
# In Kubernetes, ConfigMaps are mounted over these two paths.
COPY config/nexus.yaml /app/config/nexus.yaml
COPY playbooks/ /app/playbooks/

# Every path the bot writes is under /var/lib/nexus-bot (the SQLite database and
# its -wal/-shm files, the git mirrors in work/, and HOME, where git would look
# for its config), so the root filesystem can be mounted read-only. The other
# writable path is /tmp (Kubernetes mounts an emptyDir there; with plain Docker
# use `--read-only --tmpfs /tmp`). With PostgreSQL, set DATABASE_URL and the
# volume only holds the git cache. PORT is read by the HEALTHCHECK too.
ENV PATH=/opt/nexus-bot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/nexus-bot \
    NEXUS_CONFIG=/app/config/nexus.yaml \
    NEXUS_PLAYBOOKS=/app/playbooks \
    NEXUS_WORKDIR=/var/lib/nexus-bot/work \
    DATABASE_URL=sqlite:////var/lib/nexus-bot/nexus-bot.db \
    PORT=3000

# Read-only and root-owned: nothing is resolved or written relative to it
# (tests/scenario/test_wheel_install.py starts the bot from such a directory).
WORKDIR /app
USER 10001:10001
VOLUME ["/var/lib/nexus-bot"]
EXPOSE 3000

# For Docker and Compose; Kubernetes ignores it and uses the Deployment's probes.
# No curl in the image: Python's urllib, which fails (exit 1) on anything but a 2xx.
# It asks 127.0.0.1, so a HOST other than 0.0.0.0 or 127.0.0.1 needs its own check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]

# Exec form: nexus-bot is PID 1 and gets SIGTERM itself (uvicorn drains requests,
# then the outbox and the inbox finish the work in hand). The git processes it
# starts are waited for by the bot; `docker run --init` adds a reaper anyway.
ENTRYPOINT ["nexus-bot"]
CMD ["serve"]
