# syntax=docker/dockerfile:1
# talos-csr-signer container image, distroless-style: the runtime image holds
# only the binary, the shared libraries it loads (taken from Debian 12
# packages), the CA bundle, passwd/group entries for the non-root user 65532,
# an empty /tmp and an SPDX SBOM. No shell, no package manager. Runs as
# 65532:65532 and writes nothing (read-only root filesystem works).
#
# The build stage always runs on the build machine's architecture and
# cross-compiles for TARGETARCH with Debian's multiarch packages
# (gcc-aarch64-linux-gnu and the :arm64 -dev packages), so no emulation is
# needed to build:
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t talos-csr-signer .
#   hack/image/build.sh     (buildah, chroot isolation, vfs storage; see hack/image/README.md;
#                            it builds the toolchain stage once and passes it as TOOLCHAIN_IMAGE)
#
# Package lists: BUILD_TOOLS run on the build machine, BUILD_LIBS are the
# libraries linked into the binary (installed as :TARGETARCH when cross-building).
# The runtime libraries are not listed anywhere: hack/image/rootfs.sh copies
# whatever the binary loads (its DT_NEEDED closure, checked against ldd, and
# the libraries it names for dlopen).

ARG BASE_IMAGE=docker.io/library/debian:12-slim
# hack/image/build.sh builds the toolchain stage once per architecture and
# passes the cached result here; by default it is the stage below.
ARG TOOLCHAIN_IMAGE=toolchain

# The compilers and -dev packages, for building on BUILDPLATFORM for TARGETARCH.
FROM --platform=$BUILDPLATFORM ${BASE_IMAGE} AS toolchain
ARG TARGETARCH
ARG BUILD_TOOLS="ca-certificates cmake make pkg-config protobuf-c-compiler binutils"
ARG BUILD_LIBS="libc6-dev libgrpc-dev libprotobuf-c-dev libssl-dev libcjson-dev libcurl4-openssl-dev libmicrohttpd-dev libsodium-dev libseccomp-dev"
RUN set -eu; export DEBIAN_FRONTEND=noninteractive; \
    build_arch=$(dpkg --print-architecture); arch=${TARGETARCH:-$build_arch}; \
    case "$arch" in \
      amd64) triplet=x86_64-linux-gnu ;; \
      arm64) triplet=aarch64-linux-gnu ;; \
      *) echo "unsupported TARGETARCH $arch" >&2; exit 1 ;; \
    esac; \
    if [ "$arch" = "$build_arch" ]; then \
      cc=gcc; libs=$BUILD_LIBS; \
    else \
      dpkg --add-architecture "$arch"; cc=gcc-$triplet; \
      libs=$(for p in $BUILD_LIBS; do printf '%s:%s ' "$p" "$arch"; done); \
    fi; \
    apt-get update; \
    apt-get upgrade -y; \
    apt-get install -y --no-install-recommends $BUILD_TOOLS $cc $libs; \
    rm -rf /var/lib/apt/lists/*

# Compile, then assemble the runtime root filesystem and its SBOM in /rootfs.
FROM --platform=$BUILDPLATFORM ${TOOLCHAIN_IMAGE} AS build
ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
COPY . /src
RUN cd /src && TARGETARCH=${TARGETARCH} VERSION=${VERSION} REVISION=${REVISION} CREATED=${CREATED} \
    hack/image/rootfs.sh /rootfs

FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
COPY --from=build /rootfs/ /
LABEL org.opencontainers.image.title="talos-csr-signer" \
      org.opencontainers.image.description="Talos trustd-compatible certificate signer for non-Talos control planes" \
      org.opencontainers.image.licenses="Apache-2.0 AND MPL-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="scratch" \
      dev.talos-csr-signer.sbom="/usr/share/doc/talos-csr-signer/sbom.spdx.json"
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# 50001: gRPC (trustd protocol); 8081: /healthz /readyz /metrics
EXPOSE 50001 8081
USER 65532:65532
ENTRYPOINT ["/usr/bin/talos-csr-signer"]
