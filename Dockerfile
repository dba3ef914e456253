# pipewarden container image: a static-enough release binary on a small,
# non-root runtime. Build: docker build -t pipewarden .
#
# Stage 1 builds librdkafka from source (rdkafka's cmake-build) with TLS and
# SASL, then pipewarden in release mode.
FROM rust:1.89-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev libsasl2-dev \
      libcurl4-openssl-dev zlib1g-dev libzstd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src ./src
RUN cargo build --release --locked --bin pipewarden \
 && strip target/release/pipewarden

# Stage 2: only the shared libraries the binary links (OpenSSL, SASL, curl,
# zlib, zstd) on a slim Debian, running as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 libsasl2-2 libcurl4 zlib1g libzstd1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 pipewarden \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin pipewarden
COPY --from=build /src/target/release/pipewarden /usr/local/bin/pipewarden
COPY config.toml /etc/pipewarden/config.toml
COPY schemas /etc/pipewarden/schemas
# config.toml names schemas/ relative to the working directory.
WORKDIR /etc/pipewarden
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/pipewarden"]
CMD ["run", "--config", "/etc/pipewarden/config.toml"]
