# One image for every regwatch service: the shipper, the audit receiver, the probe, the rule
# runner, and the one-shot setup. Slim, no compilers left behind, runs as an unprivileged user.
#   docker build -t regwatch:0.1.0 .            (EXTRAS=demo adds MLflow, for the workload)
# The base image is pinned by digest (a tag can be pushed again; a digest cannot), and every
# Python dependency is installed from requirements.lock with its hashes (--require-hashes;
# regenerate with `python deploy/lock_requirements.py`). The demo's MLflow extra is not locked.
FROM python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 regwatch \
 && useradd --system --uid 10001 --gid regwatch --home-dir /var/lib/regwatch --shell /usr/sbin/nologin regwatch \
 && install -d -o regwatch -g regwatch -m 0750 /var/lib/regwatch /var/log/regwatch

WORKDIR /opt/regwatch/src
COPY requirements.lock ./
RUN pip install --no-compile --require-hashes --no-deps --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY regwatch ./regwatch
COPY contract ./contract
COPY pipeline ./pipeline
COPY parsers ./parsers
COPY rules ./rules
COPY kibana ./kibana
COPY grafana ./grafana
RUN pip install --no-compile --no-deps --no-build-isolation --no-index . \
 && if [ -n "${EXTRAS}" ]; then pip install --no-compile ".[${EXTRAS}]"; fi \
 && pip check && rm -rf /opt/regwatch/src /root/.cache

WORKDIR /var/lib/regwatch
USER 10001:10001
ENTRYPOINT ["regwatch"]
CMD ["--help"]
