# nginx-gdrive-worker: Debian bookworm's nginx with the module.
#
#   docker build -t nginx-gdrive-worker .
#   docker run --rm -p 8080:8080 --env-file worker.env nginx-gdrive-worker
#
# The module is built against Debian's own nginx source tree (nginx-dev)
# with Debian's configure flags, and loaded by the /usr/sbin/nginx of the
# same release in the runtime stage (README, "Container image").  The build
# steps are t/docker/build-module.sh, which t/04-docker-recipe.t also runs.

ARG DEBIAN_RELEASE=bookworm

FROM debian:${DEBIAN_RELEASE} AS build

WORKDIR /src/nginx-gdrive-worker
COPY config ./config
COPY src ./src
COPY t/docker/build-module.sh ./t/docker/build-module.sh
RUN bash t/docker/build-module.sh /out


FROM debian:${DEBIAN_RELEASE}-slim

RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        nginx librdkafka1 libcurl4 libjansson4 ca-certificates; \
    rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/*; \
    useradd --system --uid 10001 --user-group --home-dir /nonexistent \
        --shell /usr/sbin/nologin gdrive

COPY --from=build /out/ /
COPY t/docker/nginx.conf /etc/nginx/nginx.conf
COPY t/docker/entrypoint.sh /usr/local/bin/gdrive-entrypoint
COPY t/docker/healthcheck.sh /usr/local/bin/gdrive-healthcheck

USER 10001:10001

# The module loads into this nginx (a mismatch of version or build
# signature fails the image build, not the first start), and the
# configuration is whole, for the unprivileged user, once the required
# variables are set.
RUN KAFKA_BOOTSTRAP_SERVERS=kafka:9092 CONTROL_PLANE_URL=http://cp \
    S3_BUCKET_NAME=bucket AWS_ACCESS_KEY_ID=id AWS_SECRET_ACCESS_KEY=key \
    /usr/local/bin/gdrive-entrypoint -t -q && rm -rf /tmp/nginx*

EXPOSE 8080
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/gdrive-healthcheck"]
ENTRYPOINT ["/usr/local/bin/gdrive-entrypoint"]
