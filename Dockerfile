# syntax=docker/dockerfile:1
# The `etl` image: one binary for the replicator (`etl replicate`), the control plane
# (`etl serve-api`), migrations and `etl k8s bootstrap`.
#
#   docker build -t etl:dev .
#   docker run --rm etl:dev --help
#
# Replicator pods run it as user 10001 (see `RUN_AS_USER` in src/k8s/resources.rs) with
# `args: [replicate]` and APP_CONFIG_DIR pointing at their mounted ConfigMap. The control plane
# (deploy/base/api.yaml) runs it as `serve-api` after an init container's `migrate api`, as the
# same user, with a read-only root filesystem: nothing here is written at run time.

# --- build -------------------------------------------------------------------------------------
# The builder is Debian bookworm too, so the binary links against the runtime's glibc.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Everything Cargo.toml names: the package, its embedded migrations and its test targets.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY tests ./tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin etl \
    && cp target/release/etl /usr/local/bin/etl

# --- runtime -----------------------------------------------------------------------------------
FROM debian:bookworm-slim
# System roots for TLS to sources, destinations and the Kubernetes API.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 etl \
    && useradd --system --uid 10001 --gid etl --home-dir /app --shell /usr/sbin/nologin etl
WORKDIR /app
COPY --from=builder /usr/local/bin/etl /usr/local/bin/etl
# Default configuration (base.yaml + dev/staging/prod.yaml); deployments mount their own dir
# and point APP_CONFIG_DIR at it.
COPY config ./config
ENV APP_CONFIG_DIR=/app/config
# A numeric user, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# The control plane's HTTP port (api.listen in prod.yaml) and replicator metrics
# (kubernetes.metrics_port).
EXPOSE 8000 9000
ENTRYPOINT ["etl"]
CMD ["--help"]
