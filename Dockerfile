FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY switchyard ./switchyard
COPY service ./service
COPY gateway ./gateway
COPY cli ./cli
RUN pip install --no-cache-dir .
# A plain `docker run -p 8080:8080 IMAGE` serves the built-in config (switchyard/default.yaml), which
# binds loopback unless these say otherwise; inside a container loopback is unreachable from `-p`.
# No SWITCHYARD_CONFIG here: nothing is mounted on a plain run. Mount a file and pass --config to use
# your own, as docker-compose.yml does.
ENV SWITCHYARD_HTTP_HOST=0.0.0.0 \
    SWITCHYARD_GRPC_HOST=0.0.0.0
EXPOSE 8080 50051
# Overridden per container in docker-compose.yml.
CMD ["switchyard", "serve"]
