# Builds the anteroom gateway. Used by docker-compose.yml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
# The page is built into the binary (src/http/assets.rs).
COPY web ./web
RUN cargo build --release --locked --bin anteroom

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 anteroom
WORKDIR /app
COPY --from=build /src/target/release/anteroom /usr/local/bin/anteroom
USER anteroom
ENV ANTEROOM_LISTEN=0.0.0.0:8080 \
    ANTEROOM_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["anteroom"]
