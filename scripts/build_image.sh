#!/usr/bin/env bash
# Builds the pipeline image from ./Dockerfile with podman (or $CONTAINER_ENGINE).
#
#   scripts/build_image.sh [TAG]        default tag: rain-tomorrow:dev
#
# Where no registry can be reached, the Dockerfile's base is made locally
# first (scripts/build_base_standin.sh; skipped when the base is present).
# Layers are cached: an unchanged tree rebuilds in seconds, a code change
# reinstalls only the package, a new setup.py or constraints file the
# dependency layer. Prints the image id on its last line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENGINE="${CONTAINER_ENGINE:-podman}"
TAG="${1:-rain-tomorrow:dev}"
command -v "$ENGINE" >/dev/null || { echo "ERROR: $ENGINE is not installed (apt-get install podman buildah)" >&2; exit 1; }

"$ROOT/scripts/build_base_standin.sh" >&2
args=(build --pull=never -t "$TAG" -f "$ROOT/Dockerfile")
# Rootful podman inside a container (CI machines) cannot create the network
# namespaces of the default OCI isolation; chroot isolation needs none.
[ "$ENGINE" = podman ] && args+=(--isolation chroot)
echo ">> $ENGINE ${args[*]} $ROOT" >&2
"$ENGINE" "${args[@]}" "$ROOT" >&2
"$ENGINE" image inspect --format '{{.Id}}' "$TAG"
