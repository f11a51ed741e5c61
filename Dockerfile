# syntax=docker/dockerfile:1
# talos-csr-signer container image: Debian 12 builder, Debian 12 runtime holding
# only the binary and its shared libraries. Runs as the numeric non-root user
# 65532 and needs nothing writable (read-only root filesystem works).
#
#   docker build -t talos-csr-signer .
#   buildah build --isolation chroot --build-arg BASE_IMAGE=... -t talos-csr-signer .
#
# hack/image/build.sh builds it without a Docker engine (buildah, chroot
# isolation, vfs storage, a debootstrap-made base image) and reads the package
# lists below from this file, so keep each list on its one ARG line.

ARG BASE_IMAGE=docker.io/library/debian:12-slim

FROM ${BASE_IMAGE} AS build
ARG BUILD_DEPS="ca-certificates cmake gcc libc6-dev make pkg-config libgrpc-dev libprotobuf-c-dev protobuf-c-compiler libssl-dev libcjson-dev libcurl4-openssl-dev libmicrohttpd-dev libsodium-dev"
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends ${BUILD_DEPS} \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /out -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTS=OFF \
 && cmake --build /out --target talos-csr-signer -j "$(nproc)" \
 && strip --strip-unneeded /out/talos-csr-signer \
 && /out/talos-csr-signer --version

FROM ${BASE_IMAGE}
ARG RUNTIME_DEPS="ca-certificates libgrpc29 libprotobuf-c1 libcjson1 libcurl4 libssl3 libmicrohttpd12 libsodium23"
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="talos-csr-signer" \
      org.opencontainers.image.description="Talos trustd-compatible certificate signer for non-Talos control planes" \
      org.opencontainers.image.licenses="Apache-2.0 AND MPL-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="debian:12-slim"
RUN export DEBIAN_FRONTEND=noninteractive \
 && apt-get update \
 && apt-get install -y --no-install-recommends ${RUNTIME_DEPS} \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log
COPY --from=build /out/talos-csr-signer /usr/bin/talos-csr-signer
COPY LICENSE LICENSE-MPL-2.0 /usr/share/doc/talos-csr-signer/
# 50001: gRPC (trustd protocol); 8081: /healthz /readyz /metrics
EXPOSE 50001 8081
USER 65532:65532
ENTRYPOINT ["/usr/bin/talos-csr-signer"]
