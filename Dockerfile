# Sluice's container image: the three commands as static binaries on a
# distroless base (CA certificates, time zones, no shell), run by a user
# that is not root.
#
#   docker build -t sluice .
#   docker run --rm -p 8080:8080 -v "$PWD/sluice.yaml:/etc/sluice/sluice.yaml:ro" sluice
#   docker run --rm sluice sluice --version
#
# Sluice reads /etc/sluice/sluice.yaml. The copy of configs/example.yaml
# the image holds there listens on 127.0.0.1:8080, which only the
# container itself can reach: a configuration of your own listens on
# 0.0.0.0:8080, or the command adds --listen 0.0.0.0:8080.

FROM golang:1.26-bookworm AS builder
WORKDIR /src
# Dependencies in a layer of their own: a change to the code does not
# download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The Makefile's own build, so the image has the same commands built the
# same way as `make build`. No cgo: the binaries need no C library on the
# final image. -trimpath keeps the build machine's paths out of them; the
# .git directory in the context (see .dockerignore) gives them their commit.
ENV CGO_ENABLED=0
RUN make build BUILDFLAGS=-trimpath

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /src/bin/sluice /src/bin/sluice-agent /src/bin/sluice-bench /usr/local/bin/
COPY configs/example.yaml /etc/sluice/sluice.yaml
# The distroless nonroot user, by number: Kubernetes' runAsNonRoot can
# only verify a numeric user.
USER 65532:65532
EXPOSE 8080
# SIGTERM lets requests in flight finish for up to shutdown_grace (15s by
# default); docker stop waits 10s before SIGKILL unless given --time.
STOPSIGNAL SIGTERM
CMD ["/usr/local/bin/sluice", "--config", "/etc/sluice/sluice.yaml"]
