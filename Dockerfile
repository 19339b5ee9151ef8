# The bridge as a container: configuration from a mounted file and the environment.
#   docker build -t intilery-bridge .
#   docker run -v $PWD/bridge.yaml:/config/bridge.yaml -e INTILERY_AUTH_TOKEN=... \
#     intilery-bridge run --config /config/bridge.yaml
#
# The base image by digest (python:3.11-slim-bookworm; refresh with
# `docker buildx imagetools inspect python:3.11-slim-bookworm`), the dependencies at the
# versions of requirements.lock, each file checked against its hash (`make lock`).
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b
RUN useradd --create-home --uid 10001 bridge
WORKDIR /app
# Runtime dependencies only (the [dev] extra stays out of the image).
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
# The package without the Kafka launcher and the embedded (mock) Kafka of `make test`
# and `demo` (.dockerignore): `demo --bootstrap-servers` still runs against a real one.
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip install --no-cache-dir --no-deps . && rm -rf /root/.cache
# The examples and schemas also ship inside the package (demo); here at a fixed path too.
COPY bridge/examples /app/examples
COPY bridge/schemas /app/schemas
USER bridge
EXPOSE 9400
# /healthz: the process loop is alive, on observability.port: the examples read it from
# OBSERVABILITY_PORT (9400 unless set); set the variable when your configuration moves it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('OBSERVABILITY_PORT', '9400'), timeout=4)"]
ENTRYPOINT ["intilery-bridge"]
CMD ["run", "--config", "/app/examples/bridge.yaml"]
