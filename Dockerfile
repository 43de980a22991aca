# syntax=docker/dockerfile:1.7
# The ohttp-gateway image: a Python virtual environment on distroless Debian 12, plus the libtss2
# runtime for the azure-vtpm evidence provider, and a signed CycloneDX SBOM of that environment.
#
#   make sbom-key                                        # once: an ECDSA P-256 signing key (or your own)
#   docker build --secret id=sbom-signing-key,src=build/sbom-key/sbom-signing-key.pem \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t ohttp-gateway .
#
# Base images are pinned by digest (the tag is informational). To move to a newer base, look the
# digest up with `docker buildx imagetools inspect <image>:<tag>` (or `crane digest`), update the ARG
# below, rebuild, and update the release and client policies (docs/supply-chain.md).
# Build stages use Debian 12's python3 (3.11), the interpreter the distroless runtime ships, so the
# virtual environment's links and compiled wheels match it.
ARG DEBIAN_IMAGE=debian:bookworm-slim@sha256:b55e2651b71408015f8068dd74e1d04404a8fa607dd2cfe284b4824c11f4d9bd
ARG RUNTIME_IMAGE=gcr.io/distroless/python3-debian12:nonroot@sha256:27d2d6afcfb109e4c147449d4af957f71cb770196527d0da1d1d92b9680b0daa

# --- build: the runtime virtual environment ------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build
# Compilers and headers stay in this stage: wheels that need building (tpm2-pytss) link libtss2 here.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev \
      pkg-config libtss2-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY scripts/build-runtime-venv ./scripts/build-runtime-venv
RUN scripts/build-runtime-venv /opt/venv /src

# --- sbom: describe /opt/venv with cyclonedx-py and sign it (DSSE, ECDSA P-256) -------------------
FROM build AS sbom
COPY tools/__init__.py ./tools/__init__.py
COPY tools/sbom ./tools/sbom
RUN python3 -m venv /opt/sbom-tools \
 && /opt/sbom-tools/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes \
      --no-deps -r tools/sbom/requirements.txt
ARG SOURCE_DATE_EPOCH
RUN --mount=type=secret,id=sbom-signing-key,required=true \
    /opt/sbom-tools/bin/python -m tools.sbom generate \
      --python /opt/venv/bin/python --environment /opt/venv --pyproject pyproject.toml \
      --key /run/secrets/sbom-signing-key --out-dir /sbom

# --- tss: the libtss2 shared libraries (and what they link) for the distroless stage --------------
FROM ${DEBIAN_IMAGE} AS tss
RUN apt-get update \
 && apt-get install -y --no-install-recommends libtss2-esys-3.0.2-0 libtss2-mu0 libtss2-rc0 \
      libtss2-sys1 libtss2-tctildr0 libtss2-tcti-device0 libtss2-fapi1 \
 && rm -rf /var/lib/apt/lists/*
# Copy each libtss2 library and its dependencies, except the C library family that distroless has.
RUN mkdir -p /staging \
 && for lib in /usr/lib/x86_64-linux-gnu/libtss2-*.so.*; do echo "$lib"; ldd "$lib" | awk '/=> \//{print $3}'; done \
    | sort -u | grep -v -E '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*)\.so' \
    | xargs -I{} cp -L --parents {} /staging

# --- runtime: no shell, no package manager, no compilers ----------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ohttp-gateway" \
      org.opencontainers.image.description="In-TEE Oblivious HTTP gateway sidecar for confidential speech-to-text" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/ohttp-gateway/ohttp-gateway" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="gcr.io/distroless/python3-debian12:nonroot"
COPY --from=tss /staging/ /
COPY --from=build /opt/venv /opt/venv
COPY --from=sbom /sbom/ /usr/share/ohttp-gateway/sbom/
# Read-only root filesystem: no bytecode writes, temporary files only under the /tmp emptyDir.
ENV PATH=/opt/venv/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/opt/venv/bin/ohttp-gateway"]
CMD ["serve"]
