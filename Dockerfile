# syntax=docker/dockerfile:1
# The one recipe for agentid's images, for users and for the tests:
#   docker build --target sidecar -t agentid-sidecar .    the token sidecar (runs in every agent pod)
#   docker build --target manager -t agentid-manager .    the manager (operator + webhook)
# The local cluster builds the same file with buildah (src/dev/cluster-images.ts), passing NODE_IMAGE=a base it
# made from Debian packages and the Node binary npm ships, because these machines pull from no registry.
# Both final stages start FROM scratch: Node, the shared libraries it loads, and the compiled application.

# Pinned; bump together with the `node` devDependency (package.json).
ARG NODE_IMAGE=docker.io/library/node:24.21.0-bookworm-slim

# Production dependencies only; --ignore-scripts: none of them needs an install script.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# The compiled output (dist/): images run JavaScript, not TypeScript through type stripping.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json && find dist -name '*.map' -exec rm {} +

# Node and the shared libraries it loads, laid out for a FROM scratch stage.
FROM ${NODE_IMAGE} AS runtime
COPY scripts/image/collect.mjs /collect.mjs
RUN node /collect.mjs runtime /rootfs

# The sidecar's files: only the compiled modules reachable from `agentid sidecar` and the packages they import.
FROM ${NODE_IMAGE} AS sidecar-app
COPY scripts/image/collect.mjs /collect.mjs
COPY --from=deps /app/node_modules /app/node_modules
COPY --from=build /app/dist /app/dist
COPY package.json /app/package.json
RUN node /collect.mjs app /app /out dist/cli.js dist/sidecar/command.js

FROM scratch AS sidecar
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="agentid-sidecar" \
      org.opencontainers.image.description="agentid token sidecar: Microsoft Entra SDK auth sidecar API on loopback" \
      org.opencontainers.image.source="https://github.com/agentid/agentid" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=runtime /rootfs/ /
COPY --from=sidecar-app /out/ /app/
ENV NODE_ENV=production
WORKDIR /app
# A numeric non-root user (no /etc/passwd needed); nothing is written outside /tmp, so the root filesystem can be
# read-only.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/node", "/app/dist/cli.js", "sidecar"]

FROM scratch AS manager
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="agentid-manager" \
      org.opencontainers.image.description="agentid manager: AgentIdentity operator and pod-injecting admission webhook" \
      org.opencontainers.image.source="https://github.com/agentid/agentid" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=runtime /rootfs/ /
COPY --from=deps /app/node_modules /app/node_modules
COPY --from=build /app/dist /app/dist
COPY package.json /app/package.json
COPY crds /app/crds
ENV NODE_ENV=production
WORKDIR /app
USER 65532:65532
# The manager's V8 flags (src/manager/v8-flags.ts; test/operator/manager-footprint.test.ts keeps them equal).
ENTRYPOINT ["/usr/local/bin/node", "--max-semi-space-size=2", "--heap-growing-percent=30", "/app/dist/cli.js"]
CMD ["manager"]
