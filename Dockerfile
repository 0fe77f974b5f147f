# balance-bot container image. See docs/container.md.
#
#   docker build -t balance-bot .                          # --build-arg EXTRAS=apprise
#   docker run -d --name balance-bot -v balance-bot-data:/data \
#     -v "$PWD/rules.toml:/config/rules.toml:ro" --env-file .env -p 127.0.0.1:9464:9464 balance-bot
#
# BASE_IMAGE is any Debian-like image with python3 (3.11+) and its venv module:
# the official slim image by default (python in /usr/local/bin), or a local
# Debian base with python3 + python3-venv (python3 in /usr/bin, no `python`),
# as scripts/container-smoke-test.sh builds. Both stages use the same base, so
# the venv's interpreter symlink is valid in the runtime stage.
ARG BASE_IMAGE=python:3.11-slim

# ---- build: a venv with the project and its dependencies (wheels only) -----
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# Same path as in the runtime stage: a venv is not relocatable.
RUN python3 -m venv /opt/venv
WORKDIR /src
# Only what the package needs: no tests, no bench, no docs (see .dockerignore).
COPY pyproject.toml README.md ./
COPY bot ./bot
# setuptools is only needed to build the project, not to run it. The runtime
# user cannot write to /opt/venv, so compile the bytecode here (faster start).
# EXTRAS=apprise adds the Apprise notifier (Discord, e-mail, ntfy, ...);
# EXTRAS=postgres the PostgreSQL driver for state_url (replicas, docs/ha.md);
# both: EXTRAS=apprise,postgres.
ARG EXTRAS=
RUN /opt/venv/bin/pip install --no-compile --prefer-binary ".${EXTRAS:+[$EXTRAS]}" \
 && /opt/venv/bin/pip uninstall -y setuptools \
 && /opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib \
 && /opt/venv/bin/balance-bot --version

# ---- runtime: the base image, the venv, a non-root user; no compilers -------
FROM ${BASE_IMAGE}
ARG UID=10001
ARG GID=10001
RUN groupadd --system --gid "${GID}" balancebot \
 && useradd --system --uid "${UID}" --gid "${GID}" --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin balancebot \
 && mkdir -p /data /config \
 && chown "${UID}:${GID}" /data \
 && chmod 0750 /data
COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:${PATH} \
    BALANCE_BOT_CONFIG=/config/rules.toml \
    BALANCE_BOT_STATE_PATH=/data/balance-bot.db \
    BALANCE_BOT_HTTP_LISTEN=0.0.0.0:9464 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# State lives on the volume: $BALANCE_BOT_STATE_PATH overrides state_path (a
# relative one would sit next to the config, and /config is mounted read-only).
WORKDIR /data
VOLUME /data
EXPOSE 9464
USER ${UID}:${GID}

# /healthz: 200 while every account had a successful poll within 3 x interval.
# Stdlib only (no curl in the image); follows $BALANCE_BOT_HTTP_LISTEN's port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; port = os.environ.get('BALANCE_BOT_HTTP_LISTEN', '').rpartition(':')[2] or '9464'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# Exec form: balance-bot is PID 1 and gets SIGTERM (it then finishes sends
# under way, at most 10 s, closes the database and exits 0).
ENTRYPOINT ["balance-bot"]
CMD ["run"]
