# Dockerfile - the txmail image: one binary, every role (run / api / worker / sink).
#
# Two stages on debian:bookworm-slim, the distribution the code is built and
# tested on. The builder has the -dev packages and compiles with the
# Makefile's own flags (`make build`: no apt, no tests - CI runs those with
# `make test`). The runtime stage has only the shared libraries the binary
# links against, runs as an unprivileged user and holds no secrets: keys,
# relay credentials and webhook secrets come from the environment or from
# files named by the *_FILE variables (Docker and Kubernetes secrets).
#
#   docker build --build-arg TXMAIL_VERSION="$(cat VERSION)" -t txmail .   # or: make image
#   docker run --rm -e TXMAIL_REDIS_URL=redis://redis:6379/0 \
#              -e TXMAIL_API_KEYS=... -p 8080:8080 txmail           # all roles
#   docker run ... txmail worker                                     # one role
#
# There is no redis-server in this image, so TXMAIL_REDIS_URL must be set:
# the embedded Redis of `txmail run` (TXMAIL_REDIS_URL unset) is for
# `make run` on a workstation, not for containers. See deploy/ for compose
# and Kubernetes.

# The version is the VERSION file (the one the Makefile compiles in). A
# LABEL cannot read a file, so it comes in as the TXMAIL_VERSION build
# argument, whose default below is VERSION's content (so `docker build .`
# and `docker compose up --build` work without arguments;
# tests/integration/test_version.py fails when the two differ), and the
# build stage fails unless the binary it built reports that same version:
# an image whose label differs from its binary is never built.
ARG TXMAIL_VERSION=0.2.0

# --- build ------------------------------------------------------------------
FROM debian:bookworm-slim AS build
ARG TXMAIL_VERSION

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config \
      libmicrohttpd-dev libssl-dev libcjson-dev libhiredis-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what the binary is built from (see .dockerignore), so editing docs
# or tests does not invalidate the compile layer.
COPY Makefile VERSION ./
COPY smtp/ smtp/
COPY server/ server/
RUN make -j"$(nproc)" build \
 && ./build/txmail version \
 && if [ "$(./build/txmail version)" != "txmail ${TXMAIL_VERSION}" ]; then \
      echo "build with --build-arg TXMAIL_VERSION=$(cat VERSION) (got '${TXMAIL_VERSION}')" >&2; exit 1; \
    fi

# --- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
ARG TXMAIL_VERSION
LABEL org.opencontainers.image.title="txmail" \
      org.opencontainers.image.version="${TXMAIL_VERSION}"

# libmicrohttpd12 (HTTP), libssl3 (TLS, HMAC), libcjson1 (JSON),
# libhiredis0.14 (Redis), libcurl4 (webhooks; the OpenSSL flavour the
# builder linked), ca-certificates (verifying relay and webhook TLS).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libmicrohttpd12 libssl3 libcjson1 libhiredis0.14 libcurl4 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 txmail \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/txmail \
      --no-create-home --shell /usr/sbin/nologin txmail \
 && install -d -o txmail -g txmail -m 0750 /var/lib/txmail

COPY --from=build /src/build/txmail /usr/local/bin/txmail

# Containers publish ports, so listen on every interface here (the binary's
# own default, 127.0.0.1:8080, is right for a workstation).
ENV TXMAIL_LISTEN=0.0.0.0:8080 \
    TXMAIL_DATA_DIR=/var/lib/txmail

USER 10001:10001
WORKDIR /var/lib/txmail
# 8080: the API (and its /metrics, /healthz, /readyz); 9090: the admin
# listener of `txmail worker` (TXMAIL_ADMIN_LISTEN: /metrics, /healthz,
# /readyz). Its default, 127.0.0.1:9090, serves a check from inside the
# container only; the deployments set TXMAIL_ADMIN_LISTEN=0.0.0.0:9090 so
# that Prometheus and the kubelet reach it.
EXPOSE 8080 9090

# No HEALTHCHECK on purpose: the image has no curl or wget, and the roles
# answer on different ports (api 8080, worker 9090, sink none), so one
# built-in check would mark some role unhealthy. Orchestrators check each
# role: Kubernetes with httpGet probes on /healthz and /readyz
# (deploy/k8s/base/api.yaml, worker.yaml), compose with a bash /dev/tcp
# request (deploy/docker-compose.yml).

# SIGTERM stops gracefully (README "Shutdown"): /readyz and the API answer
# 503, SMTP transactions in flight get TXMAIL_SHUTDOWN_GRACE (25 s) to
# finish, deliveries not started go back to the queue uncounted, exit 0.
# Give the container at least the grace plus 10 s before SIGKILL (docker
# stop -t 35, compose stop_grace_period, Kubernetes
# terminationGracePeriodSeconds); a second SIGTERM exits at once.
STOPSIGNAL SIGTERM
ENTRYPOINT ["txmail"]
CMD ["run"]
