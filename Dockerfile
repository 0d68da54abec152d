# syntax=docker/dockerfile:1
#
# cx-conductor: one static binary for both the operator (`cx-conductor run`) and the
# touchpoint collectors (`cx-conductor collector --config FILE --listen 0.0.0.0:8080`).
#
#   docker build -t ghcr.io/cx-conductor/cx-conductor:0.1.0 .
#
# Build: the Rust toolchain with musl, so the binary is static (TLS is rustls: no OpenSSL).
# Runtime: distroless/static, non-root (65532), no shell, no package manager: a few MiB.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# The native architecture's musl target (amd64 or arm64 under buildx).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
 && rustup target add "$target" \
 && cargo build --release --locked --bin cx-conductor --target "$target" \
 && install -D -m 0755 "target/$target/release/cx-conductor" /out/cx-conductor \
 && /out/cx-conductor --version

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="cx-conductor" \
      org.opencontainers.image.description="Kubernetes operator that conducts omnichannel customer-experience infrastructure" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/cx-conductor /usr/local/bin/cx-conductor
# distroless' nonroot user; the chart and the collectors' pods run as the same uid/gid.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cx-conductor"]
CMD ["run"]
