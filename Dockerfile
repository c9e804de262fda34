# syntax=docker/dockerfile:1
# obo-authz container image; it is also the CLI (the entry point is `obo-authz`).
#
#   docker build -t obo-authz:dev .
#   docker run --rm -p 9001:9001 -p 9002:9002 -v "$PWD/examples/quickstart:/etc/obo-authz:ro" obo-authz:dev
#   docker run --rm -v "$PWD/examples/quickstart:/config:ro" obo-authz:dev validate --ci /config
#
# Config: a folder of *.yaml mounted at /etc/obo-authz (the default --config of this image).
# Ports: 9001 gRPC (ext_authz Check + grpc.health.v1), 9002 HTTP (/healthz, /readyz, /metrics,
# /status, STS). The health check probes a plain-HTTP /readyz on 127.0.0.1:9003 inside the
# container (OBO_AUTHZ_HEALTH_ADDRESS), which stays plain when --tls-cert is on.
# Runs as uid/gid 1000 (numeric, so Kubernetes runAsNonRoot can verify it).

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: compile TypeScript to dist/ (dev dependencies needed) --------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY proto ./proto
RUN npm run build

# ---- deps: production dependencies only --------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# ---- runtime ------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="obo-authz" \
      org.opencontainers.image.description="Envoy ext_authz v3 gRPC service with Istio authn/authz semantics and on-behalf-of token exchange" \
      org.opencontainers.image.licenses="Apache-2.0"
# OBO_AUTHZ_HEALTH_ADDRESS: `serve` opens its plain-HTTP health listener there and `health`
# (the HEALTHCHECK) probes it, whatever arguments replace CMD.
ENV NODE_ENV=production \
    OBO_AUTHZ_HEALTH_ADDRESS=127.0.0.1:9003
WORKDIR /app
# Same layout as the repository: dist/src/main.js finds proto/ by walking up from its own folder.
COPY --from=deps --chown=0:0 /src/node_modules ./node_modules
COPY --from=build --chown=0:0 /src/dist ./dist
COPY --chown=0:0 proto ./proto
COPY --chown=0:0 package.json ./
# The config mount point; files stay root-owned and read-only for the service user.
RUN mkdir -p /etc/obo-authz
USER 1000:1000
EXPOSE 9001 9002
# Exec form, no shell: SIGTERM reaches node directly (graceful drain, exit 0).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "/app/dist/src/main.js", "health"]
ENTRYPOINT ["node", "/app/dist/src/main.js"]
CMD ["serve", "--config", "/etc/obo-authz"]
