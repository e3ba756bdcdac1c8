# syntax=docker/dockerfile:1
# The demo application the deployment service rolls out (-fleet local runs
# it as processes; an image is what a cluster target would run). Build from
# the repository's root:
#
#   docker build -f deploy/docker/demoapp.Dockerfile -t taikit/demoapp .
#
# demoapp needs no token and writes nothing; it listens where -addr says
# (the image sets :8080).

FROM golang:1.26 AS build
ENV CGO_ENABLED=0 GOWORK=off GOFLAGS=-trimpath
# demoapp imports only the standard library and Prometheus's client, but it
# lives in the examples module, whose requirements must resolve.
WORKDIR /src
COPY . .
WORKDIR /src/examples
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w" -o /out/demoapp ./deployment/demoapp
WORKDIR /src/deploy/probe
RUN --mount=type=cache,target=/root/.cache/go-build go build -ldflags="-s -w" -o /out/probe .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/demoapp /demoapp
COPY --from=build /out/probe /probe
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["/probe", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/demoapp", "-addr", ":8080"]
