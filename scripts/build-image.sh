#!/usr/bin/env bash
# Build the pod image and tag it as jina's hub computes it from manifest.yml
# (jinahub/pod.encoder.vseimageencoder:<version>-<jina version>). Uses docker when its
# daemon answers, else podman, else buildah. Extra arguments go to the build command:
#
#   scripts/build-image.sh
#   scripts/build-image.sh --build-arg MODEL=f30k_vse++_resnet_finetune
#   BUILDER=podman scripts/build-image.sh --network host --build-arg WEIGHTS_SOURCE=/srv/runs.tar
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py=.venv/bin/python
[ -x "$py" ] || { echo "build-image: run scripts/setup.sh first (the tag is computed with jina)" >&2; exit 1; }
tag="$("$py" scripts/image_tag.py 2>/dev/null | tail -n 1)"
case "$tag" in jinahub/*:*) ;; *) echo "build-image: could not compute the image tag" >&2; exit 1;; esac

builder="${BUILDER:-}"
if [ -z "$builder" ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then builder=docker
    elif command -v podman >/dev/null 2>&1; then builder=podman
    elif command -v buildah >/dev/null 2>&1; then builder=buildah
    else echo "build-image: none of docker (with a running daemon), podman or buildah found" >&2; exit 1
    fi
fi
echo "build-image: $builder -> $tag" >&2
case "$builder" in
    docker) docker build -t "$tag" "$@" . ;;
    podman) podman build --pull=never -t "$tag" "$@" . ;;
    buildah) buildah bud --pull=false -t "$tag" "$@" . ;;
    *) echo "build-image: unknown BUILDER=$builder" >&2; exit 1 ;;
esac
echo "$tag"
