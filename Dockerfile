# kapture-sync: `kapture-sync daemon` by default; any other command works too
# (`docker compose run --rm daemon kapture-sync status`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sync ./sync
COPY migrations ./migrations
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /app kapture \
    && mkdir -p /app/data && chown kapture /app/data
USER kapture

# /healthz and /metrics when KAPTURE_SYNC_METRICS_PORT=9100 (docker-compose.yml sets it).
EXPOSE 9100
# SIGTERM stops the daemon cleanly (the run in progress is recorded `interrupted`) within 10 s.
STOPSIGNAL SIGTERM
CMD ["kapture-sync", "daemon"]
