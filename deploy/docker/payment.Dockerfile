# syntax=docker/dockerfile:1
# The payment service. Build from the repository's root:
#
#   docker build -f deploy/docker/payment.Dockerfile -t taikit/payment .
#
# The image runs as a user without privileges (65532, distroless's nonroot)
# on a read-only root filesystem if asked to: all it writes goes to /data
# (DATA_DIR: the audit trail, and the embedded NATS store when no NATS_URL
# is given). It listens on :3001, which the service accepts only with an
# API token: give one with API_TOKEN_FILE (a mounted secret).

FROM golang:1.26 AS build
ENV CGO_ENABLED=0 GOWORK=off GOFLAGS=-trimpath
WORKDIR /src
# The module files first: the download is cached until they change.
COPY go.mod go.sum ./
COPY examples/go.mod examples/go.sum ./examples/
COPY heijunka/redisgcra/go.mod heijunka/redisgcra/go.sum ./heijunka/redisgcra/
COPY kaizen/kaizenotel/go.mod kaizen/kaizenotel/go.sum ./kaizen/kaizenotel/
COPY kaizen/kaizenprom/go.mod kaizen/kaizenprom/go.sum ./kaizen/kaizenprom/
COPY kanban/kanbanotel/go.mod kanban/kanbanotel/go.sum ./kanban/kanbanotel/
COPY kanban/natsembed/go.mod kanban/natsembed/go.sum ./kanban/natsembed/
COPY kanban/natsjs/go.mod kanban/natsjs/go.sum ./kanban/natsjs/
COPY tai/taicel/go.mod tai/taicel/go.sum ./tai/taicel/
WORKDIR /src/examples
RUN --mount=type=cache,target=/go/pkg/mod go mod download
WORKDIR /src
COPY . .
WORKDIR /src/examples
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w" -o /out/payment ./payment
# The HEALTHCHECK's client: the final image has no shell and no curl.
WORKDIR /src/deploy/probe
RUN --mount=type=cache,target=/root/.cache/go-build go build -ldflags="-s -w" -o /out/probe .
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/payment /payment
COPY --from=build /out/probe /probe
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV ADDR=:3001 DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 3001
# Liveness only (/healthz): readiness (/readyz, NATS and Redis reachable) is
# for the orchestrator, which takes a replica out of rotation rather than
# restart it while a dependency is down. The probe asks 127.0.0.1, which
# the default Host allow-list accepts; an ALLOWED_HOSTS given in its place
# must name 127.0.0.1 too, or the service answers the probe 421 and the
# container is never healthy (check.CheckCompose reports it).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/probe", "-timeout", "2s", "http://127.0.0.1:3001/healthz"]
ENTRYPOINT ["/payment"]
