# medic: build, then a small Debian image with the ssh client medic drives. Runs as the unprivileged
# user `medic` (uid 10001); its data lives in the volume at /var/lib/medic. The prompts are read from
# /usr/share/medic/prompts (MEDIC_DIAGNOSE__PROMPTS_DIR), so they can be edited by mounting that path.
# Checked with hadolint by scripts/check-deploy.sh; no Docker engine runs in CI, so it is not built there.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client=1:9.2* ca-certificates=2023* \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 medic \
    && useradd --system --uid 10001 --gid medic --home-dir /var/lib/medic --shell /usr/sbin/nologin medic \
    && install -d -o medic -g medic -m 0700 /var/lib/medic
COPY --from=build /src/target/release/medic /usr/local/bin/medic
COPY config /etc/medic
COPY prompts /usr/share/medic/prompts
COPY scripts/clean_logs.sh scripts/restart_service.sh scripts/check_disk.sh scripts/health_check.sh /usr/share/medic/host-scripts/
ENV MEDIC_CONFIG=/etc/medic/medic.toml \
    MEDIC_STORE__DATA_DIR=/var/lib/medic \
    MEDIC_DIAGNOSE__PROMPTS_DIR=/usr/share/medic/prompts \
    MEDIC_SERVER__BIND=0.0.0.0:8080
USER 10001:10001
WORKDIR /var/lib/medic
VOLUME ["/var/lib/medic"]
EXPOSE 8080
ENTRYPOINT ["medic"]
CMD ["serve"]
