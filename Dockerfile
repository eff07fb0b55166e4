# syntax=docker/dockerfile:1
# A static binary on distroless, running as nonroot.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/deployhook .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/deployhook /deployhook
USER nonroot:nonroot
EXPOSE 8080
# The journal lives in /data: mount a volume there.
ENTRYPOINT ["/deployhook"]
CMD ["serve", "--config", "/etc/deployhook/config.yaml", "--listen", "0.0.0.0:8080", "--data-dir", "/data"]
