FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY switchyard ./switchyard
COPY service ./service
COPY gateway ./gateway
RUN pip install --no-cache-dir .
ENV SWITCHYARD_CONFIG=/etc/switchyard/config.yaml
# Overridden per container in docker-compose.yml.
CMD ["switchyard", "serve"]
