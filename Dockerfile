# syntax=docker/dockerfile:1
# One image recipe for Tributary's services; BIN selects the binary:
#   docker build --build-arg BIN=tributary-lake -t tributary/lake .
# BIN is one of tributary-ingest, tributary-erp-sim, tributary-lake, tributary-marts, tributary-api.
# The build stage compiles every binary once and does not depend on BIN, so compose's services
# share it (BuildKit caches it) instead of compiling the workspace once per service.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# rdkafka's `cmake-build` feature compiles librdkafka: cmake + curl + SASL headers
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev libsasl2-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# -p: only these packages' features (the e2e crate's `failpoints` stays out of the images).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
      -p tributary-ingest -p tributary-lake -p tributary-marts -p tributary-api \
      --bin tributary-ingest --bin tributary-erp-sim --bin tributary-lake --bin tributary-marts \
      --bin tributary-api \
 && mkdir -p /out \
 && cp target/release/tributary-ingest target/release/tributary-erp-sim target/release/tributary-lake \
       target/release/tributary-marts target/release/tributary-api /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcurl4 libsasl2-2 libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --create-home tributary
# state our services keep on a volume (compose.yaml), owned by the user they run as: a new named
# volume takes the ownership of the folder it is mounted on
RUN install -d -o tributary /var/lib/tributary /var/lib/erp-sim
ARG BIN=tributary-api
COPY --from=build /out/${BIN} /usr/local/bin/${BIN}
RUN ln -s /usr/local/bin/${BIN} /usr/local/bin/service
WORKDIR /app
USER tributary
# configuration: TRIBUTARY_* environment variables (see compose.yaml), or --config FILE
ENTRYPOINT ["/usr/local/bin/service"]
