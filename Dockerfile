# One image for every service of mingo-dataflow (python -m services.<name>, or the `mingo` CLI).
# python:3.11-slim, not alpine: numba and the scientific wheels need glibc.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY services services
COPY simulator simulator
COPY infra infra
COPY config config
RUN pip install --no-cache-dir . \
    && useradd --uid 1000 --create-home mingo \
    && mkdir -p /data && chown mingo:mingo /data

ENV PYTHONUNBUFFERED=1 \
    MINGO_NETWORK_FILE=/app/config/stations.yaml \
    NUMBA_CACHE_DIR=/tmp/numba
USER mingo
CMD ["mingo", "--help"]
