# spansieve beside OBI: build with `docker build -t spansieve .`, run with the host network or
# publish 4317/4318. In a container the listeners bind 0.0.0.0 (set below); outside they default
# to 127.0.0.1.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY test ./test
COPY bench ./bench
RUN npx tsc -p tsconfig.json && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    SPANSIEVE_OTLP_GRPC_ENDPOINT=0.0.0.0:4317 \
    SPANSIEVE_OTLP_HTTP_ENDPOINT=0.0.0.0:4318 \
    SPANSIEVE_HEALTH_ENDPOINT=0.0.0.0:13133 \
    SPANSIEVE_METRICS_ADDRESS=0.0.0.0:8888 \
    SPANSIEVE_PROMETHEUS_ENDPOINT=0.0.0.0:8889
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
COPY proto ./proto
COPY config ./config
COPY bin ./bin
EXPOSE 4317 4318 13133 8888 8889
# The admin page stays on loopback inside the container unless you set SPANSIEVE_ADMIN_ENDPOINT
# and SPANSIEVE_ADMIN_TOKEN. process: selectors read other users' /proc/PID/exe and fd: run with
# --pid=host and as root (--user 0) with CAP_SYS_PTRACE for them, as OBI itself runs privileged.
USER node
HEALTHCHECK CMD node -e "fetch('http://127.0.0.1:13133/').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["bin/spansieve"]
CMD ["--config", "config/default.yaml"]
