# Build medic and ship it on Debian with the ssh client it drives. Not exercised in CI (no Docker engine).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends openssh-client ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/medic /usr/local/bin/medic
COPY config /etc/medic
COPY prompts /usr/share/medic/prompts
COPY templates /usr/share/medic/templates
COPY scripts /usr/share/medic/scripts
WORKDIR /var/lib/medic
ENTRYPOINT ["medic"]
CMD ["--config", "/etc/medic/medic.toml", "serve"]
