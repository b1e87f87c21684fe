# One image with every surgeflow binary: the four operators and the `surgeflow` command.
#   docker build -t ghcr.io/surgeflow/surgeflow:0.1.0 .
# The Kubernetes manifests in k8s/ run it as user 10001 with a read-only root file system and
# mount the topology at /etc/surgeflow/topology.yaml; the Avro schemas it references are
# copied here, to /etc/surgeflow/schemas, next to the binaries whose types mirror them.

FROM rust:1.95-bookworm AS build
# librdkafka is built from source (rdkafka's default features) with OpenSSL.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        cmake pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
        -p surgeflow-cli \
        -p surgeflow-location-router \
        -p surgeflow-trip-router \
        -p surgeflow-surge-pricer \
        -p surgeflow-matcher \
        --bins \
    && mkdir /out \
    && cp target/release/surgeflow target/release/location-router target/release/trip-router \
        target/release/surge-pricer target/release/matcher /out/

FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 surgeflow \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin surgeflow
COPY --from=build /out/ /usr/local/bin/
COPY schemas/ /etc/surgeflow/schemas/
USER 10001:10001
WORKDIR /etc/surgeflow
ENV SURGEFLOW_TOPOLOGY=/etc/surgeflow/topology.yaml \
    SURGEFLOW_HTTP_HOST=0.0.0.0
CMD ["surgeflow", "--help"]
