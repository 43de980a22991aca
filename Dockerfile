# Placeholder until the deployment issue: builds and runs the gateway. See README.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir .
USER 10001:10001
ENTRYPOINT ["ohttp-gateway"]
CMD ["serve"]
