# syntax=docker/dockerfile:1
# ALP gRPC gateway: multi-stage, slim, non-root. Same entry point as the README (`alp-gateway serve`).

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY generated ./generated
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim AS runtime
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
    && mkdir -p /var/lib/alp-gateway && chown 10001:10001 /var/lib/alp-gateway
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 ALP_GATEWAY_LISTEN_HOST=0.0.0.0 \
    ALP_GATEWAY_METRICS_HOST=0.0.0.0 ALP_GATEWAY_AUDIT_PATH=/var/lib/alp-gateway/audit.jsonl
WORKDIR /var/lib/alp-gateway
USER 10001:10001
EXPOSE 50051 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["alp-gateway", "health", "--target", "127.0.0.1:50051"]
ENTRYPOINT ["alp-gateway"]
CMD ["serve"]
