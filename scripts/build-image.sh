#!/usr/bin/env bash
# Build a pod image and tag it as jina's hub computes it from manifest.yml:
# jinahub/pod.encoder.vseimageencoder:<version>-<jina version>.
#
#   scripts/build-image.sh [BUILD ARGS...]          # jina 0.9.33 image (Dockerfile)
#   scripts/build-image.sh --jina3 [BUILD ARGS...]  # jina 3 image (Dockerfile.jina3)
#   scripts/build-image.sh [--jina3] --print-tag    # only print the tag
#
# Both images share the rule, so the tag's jina version says which world an image is for
# (…:0.0.6-0.9.33, …:0.0.6-3.34.0). The 0.9.33 tag is computed by jina 0.9.33's own hub
# code (scripts/image_tag.py, needs .venv); the jina 3 tag from manifest.yml's version and
# requirements-jina3.txt's jina pin. Uses docker when its daemon answers, else podman, else
# buildah. Extra arguments go to the build command:
#
#   scripts/build-image.sh --build-arg MODEL=f30k_vse++_resnet_finetune
#   BUILDER=podman scripts/build-image.sh --jina3 --network host --build-arg WEIGHTS_SOURCE=/srv/runs.tar
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

jina3=0
print_tag=0
while [ $# -gt 0 ]; do
    case "$1" in
        --jina3) jina3=1; shift ;;
        --print-tag) print_tag=1; shift ;;
        *) break ;;
    esac
done

if [ "$jina3" = 1 ]; then
    dockerfile=Dockerfile.jina3
    version="$(sed -n "s/^version:[[:space:]]*[\"']\{0,1\}\([0-9][^\"' #]*\).*/\1/p" manifest.yml | head -n 1)"
    jina="$(sed -n 's/^jina==\([0-9][0-9a-zA-Z.]*\).*/\1/p' requirements-jina3.txt | head -n 1)"
    [ -n "$version" ] && [ -n "$jina" ] || {
        echo "build-image: no version in manifest.yml or no jina==X pin in requirements-jina3.txt" >&2; exit 1; }
    tag="jinahub/pod.encoder.vseimageencoder:${version}-${jina}"
else
    dockerfile=Dockerfile
    py=.venv/bin/python
    [ -x "$py" ] || { echo "build-image: run scripts/setup.sh first (the tag is computed with jina)" >&2; exit 1; }
    tag="$("$py" scripts/image_tag.py 2>/dev/null | tail -n 1)"
fi
case "$tag" in jinahub/*:*) ;; *) echo "build-image: could not compute the image tag" >&2; exit 1;; esac
if [ "$print_tag" = 1 ]; then echo "$tag"; exit 0; fi

builder="${BUILDER:-}"
if [ -z "$builder" ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then builder=docker
    elif command -v podman >/dev/null 2>&1; then builder=podman
    elif command -v buildah >/dev/null 2>&1; then builder=buildah
    else echo "build-image: none of docker (with a running daemon), podman or buildah found" >&2; exit 1
    fi
fi
echo "build-image: $builder $dockerfile -> $tag" >&2
case "$builder" in
    docker) docker build -f "$dockerfile" -t "$tag" "$@" . ;;
    podman) podman build --pull=never -f "$dockerfile" -t "$tag" "$@" . ;;
    buildah) buildah bud --pull=false -f "$dockerfile" -t "$tag" "$@" . ;;
    *) echo "build-image: unknown BUILDER=$builder" >&2; exit 1 ;;
esac
echo "$tag"
