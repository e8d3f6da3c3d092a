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
#
# podman and buildah build with --pull=never (no registry is assumed reachable): the base
# images must already be in the store; when one is missing the script says how to get it.
# The images the container tests build live in their own store, not podman's default one:
# see them with
#   CONTAINERS_STORAGE_CONF=/var/tmp/vseimageencoder-ctr/storage.conf podman images
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

usage() {
    cat <<'EOF'
usage: scripts/build-image.sh [--jina3] [--print-tag] [BUILD ARGS...]

Builds the pod image and tags it as jina's hub does from manifest.yml:
  (no flag)    jina 0.9.33 image from Dockerfile   -> jinahub/pod.encoder.vseimageencoder:<version>-0.9.33
  --jina3      jina 3 image from Dockerfile.jina3  -> jinahub/pod.encoder.vseimageencoder:<version>-3.34.0
  --print-tag  only print the tag
  BUILD ARGS   passed to the build, e.g. --build-arg MODEL=f30k_vse++_resnet_finetune
  -h, --help   this text

Uses docker when its daemon answers, else podman, else buildah (or BUILDER=...).
podman and buildah never pull (--pull=never): the base images (python:3.9 and
python:3.9-slim; python:3.11-slim for --jina3, or what --build-arg BUILDER_BASE=/BASE=
names) must be in the store first: `podman pull python:3.11-slim` where a registry is
reachable, or a local one, e.g. the Debian base the tests make with debootstrap
(tests/support/containers.py) and --build-arg BASE=localhost/vse-py311:bookworm.
The images the container tests build live in their own store; list them with
  CONTAINERS_STORAGE_CONF=/var/tmp/vseimageencoder-ctr/storage.conf podman images
EOF
}

jina3=0
print_tag=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
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
# The base images the build would use: the Dockerfile's ARG defaults, unless a
# --build-arg NAME=VALUE (or --build-arg=NAME=VALUE) among the arguments overrides them.
base_images() {
    local name value arg prev
    for name in BUILDER_BASE BASE; do
        value="$(sed -n "s/^ARG ${name}=//p" "$dockerfile" | head -n 1)"
        [ -n "$value" ] || continue
        prev=""
        for arg in "$@"; do
            case "$prev|$arg" in
                "--build-arg|${name}="*) value="${arg#${name}=}" ;;
                *"|--build-arg=${name}="*) value="${arg#--build-arg=${name}=}" ;;
            esac
            prev="$arg"
        done
        echo "$value"
    done
}
if [ "$builder" = podman ] || [ "$builder" = buildah ]; then
    for base in $(base_images "$@"); do
        if [ "$builder" = podman ]; then podman image exists "$base" && continue
        else buildah inspect --type image "$base" >/dev/null 2>&1 && continue
        fi
        cat >&2 <<EOF
build-image: base image $base is not in $builder's store, and the build never pulls.
  Get it with '$builder pull $base' where a registry is reachable, or name a local base:
  --build-arg BASE=IMAGE (and BUILDER_BASE=IMAGE for the 0.9.33 image). The tests make
  Debian ones with debootstrap (tests/support/containers.py: ensure_base_images,
  ensure_jina3_base_image) in their own store, listed by
  CONTAINERS_STORAGE_CONF=/var/tmp/vseimageencoder-ctr/storage.conf podman images
EOF
        exit 1
    done
fi
echo "build-image: $builder $dockerfile -> $tag" >&2
case "$builder" in
    docker) docker build -f "$dockerfile" -t "$tag" "$@" . ;;
    podman) podman build --pull=never -f "$dockerfile" -t "$tag" "$@" . ;;
    buildah) buildah bud --pull=false -f "$dockerfile" -t "$tag" "$@" . ;;
    *) echo "build-image: unknown BUILDER=$builder" >&2; exit 1 ;;
esac
echo "$tag"
