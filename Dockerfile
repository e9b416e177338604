# syntax=docker/dockerfile:1
# openai-monitor: the always-on daemon (collect, detect, check and alert, retrain daily).
#   docker build -t openai-monitor .
#   docker run -d --name oaim -v oaim-data:/data openai-monitor
# Install steps mirror .ci/run: a virtual environment, then `pip install` from the source tree.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY openai_monitor ./openai_monitor
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="openai-monitor" \
      org.opencontainers.image.description="Local-first LLM API spend tracking, forecasts, anomaly alerts" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    OAIM_HOME=/data \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 oaim \
    && useradd --system --uid 10001 --gid oaim --home-dir /data --no-create-home oaim \
    && mkdir -p /data \
    && chown oaim:oaim /data
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
ENTRYPOINT ["oaim"]
CMD ["daemon", "--foreground"]
