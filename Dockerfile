# spansieve beside OBI: `docker build -t spansieve .`, then see README "Run in a container".
# NODE_IMAGE: any Node 20 image on Debian with a `node` user (the tests build with a local stand-in).
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.image.json ./
COPY scripts/build-page.js ./scripts/
COPY src ./src
# The server, then the admin page (browser script, HTML, CSS) into dist/src/extensions/admin/page.
RUN npx tsc -p tsconfig.image.json && node scripts/build-page.js && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE}
WORKDIR /app
# What a container exposes by default (README "Run in a container"): OTLP and health_check on
# 0.0.0.0; self-metrics (8888), the Prometheus endpoint (8889) and the admin page (13180) stay on
# the container's loopback until their variable asks for more, e.g.
# -e SPANSIEVE_PROMETHEUS_ENDPOINT=0.0.0.0:8889 -p 8889:8889.
ENV NODE_ENV=production \
    SPANSIEVE_OTLP_GRPC_ENDPOINT=0.0.0.0:4317 \
    SPANSIEVE_OTLP_HTTP_ENDPOINT=0.0.0.0:4318 \
    SPANSIEVE_HEALTH_ENDPOINT=0.0.0.0:13133
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
COPY proto ./proto
COPY config ./config
COPY bin ./bin
EXPOSE 4317 4318 13133
# The admin API off loopback needs SPANSIEVE_ADMIN_TOKEN too. process: selectors read other users'
# /proc/PID/exe and fd: run with --pid=host and as root (--user 0) with CAP_SYS_PTRACE for them,
# as OBI itself runs privileged. bin/spansieve sets V8's heap limit from a memory_limiter.
USER node
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["node", "-e", "fetch('http://127.0.0.1:13133/').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["bin/spansieve"]
CMD ["--config", "config/default.yaml"]
