# idsync container image: a release build on Debian, run as an unprivileged user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p idsync

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/idsync /usr/local/bin/idsync
USER 65534:65534
WORKDIR /var/lib/idsync
ENTRYPOINT ["/usr/local/bin/idsync"]
