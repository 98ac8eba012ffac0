# syntax=docker/dockerfile:1
# ALP gRPC gateway: multi-stage, slim, non-root. Same entry point as the README (`alp-gateway serve`).

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# A wheelhouse built beside the Dockerfile (scripts/build_image.sh: `pip wheel . -w wheels`): the
# image installs exactly the wheels the tests ran, offline, with no compiler in the image.
COPY wheels /wheels
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels alp-gateway

FROM python:3.11-slim AS runtime
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
    && mkdir -p /var/lib/alp-gateway && chown 10001:10001 /var/lib/alp-gateway
COPY --from=build /opt/venv /opt/venv
# The image's settings are a config file, never ENV (variables outrank the file, so they would
# override the operator's gateway.toml): see deploy/image-gateway.toml. ALP_GATEWAY_CONFIG only
# names the file; `serve --config FILE` or a file mounted over it replaces it whole.
COPY deploy/image-gateway.toml /etc/alp-gateway/gateway.toml
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 ALP_GATEWAY_CONFIG=/etc/alp-gateway/gateway.toml
WORKDIR /var/lib/alp-gateway
USER 10001:10001
# gRPC, plaintext HTTP health (/healthz, /readyz), Prometheus
EXPOSE 50051 8081 9464
# Liveness over plaintext HTTP, whatever TLS the gRPC port has: the process answers /healthz. Not
# /readyz: an ALP outage must not make orchestrators replace every container. The port is
# health.http_port; set it through ALP_GATEWAY_HEALTH_HTTP_PORT if you change it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ALP_GATEWAY_HEALTH_HTTP_PORT', '8081'), timeout=2)"]
ENTRYPOINT ["alp-gateway"]
CMD ["serve"]
