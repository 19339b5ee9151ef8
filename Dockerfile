# The bridge as a container: configuration from a mounted file and the environment.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 bridge
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip install --no-cache-dir . && rm -rf /root/.cache
COPY examples /app/examples
USER bridge
ENTRYPOINT ["intilery-bridge"]
CMD ["run", "--config", "/app/examples/bridge.yaml"]
