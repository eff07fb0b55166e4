# syntax=docker/dockerfile:1
# deployhook on distroless, as nonroot, built by the same tool as the release
# binaries (tools/release: static, -trimpath, stamped, reproducible).
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg DATE=$(git log -1 --format=%cI) -t deployhook .
#
# Configuration: mount it at /etc/deployhook/config.yaml. Secrets: environment
# variables or files named by NAME_FILE (a mounted secret), never the image.
# The port: $PORT (Cloud Run sets it; 8080 otherwise) on every interface.
# The journal: /var/lib/deployhook, owned by nonroot (65532), mode 0700; mount a
# volume there, or it is lost with the container.

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=1970-01-01T00:00:00Z
RUN go run ./tools/release -out /out -platforms linux/${TARGETARCH} \
      -version "${VERSION}" -commit "${COMMIT}" -date "${DATE}" \
 && mv "/out/deployhook_${VERSION}_linux_${TARGETARCH}" /deployhook \
 && mv "/out/deployhook_${VERSION}_linux_${TARGETARCH}.cdx.json" /deployhook.cdx.json
# The journal's directory, made here because the final image has no shell. It
# is copied with its mode (0700); --chown makes nonroot its owner, as deployhook
# demands of data_dir.
RUN install -d -m 0700 /rootfs/deployhook

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /deployhook /deployhook
COPY --from=build /deployhook.cdx.json /deployhook.cdx.json
COPY --from=build --chown=65532:65532 /rootfs/ /var/lib/
USER 65532:65532
ENV PORT=8080
EXPOSE 8080
VOLUME ["/var/lib/deployhook"]
ENTRYPOINT ["/deployhook"]
CMD ["serve", "--config", "/etc/deployhook/config.yaml", "--data-dir", "/var/lib/deployhook"]
