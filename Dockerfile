# syntax=docker/dockerfile:1
# spiffe-sidecar: built with the dev dependencies, shipped with the production ones only, on a distroless
# Node base (no shell, no package manager) as a non-root user. Nothing is written at run time, so it runs
# with a read-only root filesystem. No HEALTHCHECK: Kubernetes probes /healthz and /readyz instead.
#
#   docker build -t spiffe-sidecar:0.1.0 .
#   docker run --rm spiffe-sidecar:0.1.0 --version
# Node 24: `npm run bench` (README, Performance) chose it over Node 20 (end of life since 2026-04): 1.8× the new
# mTLS connections per second (1.04× nginx), 0.8× the startup time, 0.9× the CPU per request, for ~15 MB more RSS.
ARG NODE_MAJOR=24

# 1. Compile TypeScript to dist/ and bundle the CLI into dist/main.js (needs the dev dependencies).
FROM node:${NODE_MAJOR}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json rolldown.config.js ./
COPY src ./src
RUN npm run build && mkdir /app/compile-cache

# 2. The production dependencies alone, exactly as the lockfile pins them.
FROM node:${NODE_MAJOR}-bookworm-slim AS production-dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# 3. What the image runs: node, the pruned node_modules, dist/ and package.json (read by --version), as the
#    non-root user, with the compile cache below named.
FROM gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot AS runtime
WORKDIR /app
ENV NODE_ENV=production
COPY --from=production-dependencies /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# 65532: distroless's "nonroot"; the injector sets the same runAsUser on the sidecars it adds.
USER 65532:65532
ENV NODE_COMPILE_CACHE=/app/compile-cache
# One TLS 1.3 session ticket per full handshake instead of OpenSSL's two (src/openssl.cnf says why: ~3.5% of a
# new mTLS connection's CPU). An OPENSSL_CONF set for the container replaces it.
ENV OPENSSL_CONF=/app/dist/openssl.cnf

# 4. V8's compiled code for every module, made once here instead of at every start (~15 ms of a ~150 ms start;
#    README, Performance): by the image's own node, as the sidecar's user, on the same files at the same paths
#    (Node keeps one cache per Node version, V8 flags and uid, and reads no other).
FROM runtime AS compile-cache
COPY --from=build --chown=65532:65532 /app/compile-cache ./compile-cache
RUN ["/nodejs/bin/node", "/app/dist/warm-compile-cache.js"]

# 5. The image: the cache copied in owned by root and read-only. Node checks a cache entry against its source's
#    hash, not its compiled code against the source: the user that runs the code must not be able to write it.
FROM runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="spiffe-sidecar" \
      org.opencontainers.image.description="SPIFFE mTLS sidecar proxy and its Kubernetes injector" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/nodejs24-debian12:nonroot"
COPY --from=compile-cache --chown=0:0 --chmod=0555 /app/compile-cache ./compile-cache
# 8443 the sidecar's listener, 15020 its admin port in a pod, 9443 the injector.
EXPOSE 8443 15020 9443
# A 4 MB young generation (V8's semi-space; Node 24's default grows to 16 MB): peak RSS under keep-alive load
# 117 -> 99 MB with the same CPU per request, per new connection and to ready (README, Performance). A 256 MB old
# generation, as in the injected sidecar's memory limit: V8 sizes how far the old generation grows between full
# GCs by its maximum, which is 1/4 of the machine's memory where no cgroup limit says otherwise; with it, under
# load with connection churn and rotation, full GCs come every 10-20 s at ~20 MB of heap instead of at ~45 MB or
# later, and RSS holds at ~101 MB instead of climbing past 124 (issue 17, the soak). Neither flag changes the
# compile cache's key (the cache above is accepted with them). The bench starts its sidecars with the node flags
# it reads here.
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=4", "--max-old-space-size=256", "/app/dist/main.js"]
CMD ["--help"]
