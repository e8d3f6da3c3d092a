# The VSEImageEncoder pod image (jina 0.9.33). Users run it as
#     docker run IMAGE --port-in 55555 --port-out 55556                  # the image tower
#     docker run IMAGE --uses text.yml --port-in 55555 --port-out 55556  # the text tower
# (the later --uses wins over the entrypoint's config.yml). The jina 3 image is built from
# Dockerfile.jina3 (scripts/build-image.sh --jina3).
# Build it with scripts/build-image.sh, which tags it as jina's hub computes from
# manifest.yml: jinahub/pod.encoder.vseimageencoder:<version>-<jina version>.
#
# Build arguments (all optional), for mirrors and offline builds:
#   BUILDER_BASE     image with Python 3.8/3.9, its headers and a C compiler (jina's lz4
#                    dependency builds from source); only the build stages use it
#   BASE             the runtime image: the same Python, nothing else needed
#   PYTHON           the interpreter's name in both images
#   TORCH_INDEX_URL  where torch/torchvision come from, besides PIP_INDEX_URL; the default is
#                    PyTorch's CPU-only index (PyPI's Linux wheels carry CUDA, several GB)
#   PIP_INDEX_URL    everything else
#   PIP_CERT         a CA bundle in the base image, where TLS is intercepted by a local CA
#   MODEL            the released model baked in (the original hub image used f30k_vse++_vggfull)
#   WEIGHTS_SOURCE   the VSE++ release archive (URL or path), streamed, never stored
#   VOCAB_SOURCE     the VSE++ vocabulary archive (URL or path), likewise; the model's
#                    <data_name>_vocab.pkl lands beside the checkpoint, for text.yml
ARG BUILDER_BASE=python:3.9
ARG BASE=python:3.9-slim

# Stage 1: wheels of every dependency but torch, built where a compiler is (jina's lz4 has
# no wheel). Nothing of this package is in it, so a source change leaves it cached.
FROM ${BUILDER_BASE} AS wheels
ARG PYTHON=python3
ARG PIP_INDEX_URL=https://pypi.org/simple
# Set PIP_CERT to a CA bundle inside the base image where TLS is intercepted by a local CA
# (pip >= 20.x uses its own certifi store, not the system one).
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN ${PYTHON} -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Debian's venv brings pip 20 / setuptools 44, too old to build jina's lz4 from source.
RUN pip install --index-url "${PIP_INDEX_URL}" --upgrade "pip<25" "setuptools<70" wheel
COPY requirements.txt /tmp/requirements.txt
# pytest is for the repository's tests only; torch comes from its own index in the final stage.
RUN mkdir /wheels \
 && grep -v -E '^(pytest|torch|torchvision)[ =<>!~;]' /tmp/requirements.txt > /wheels/runtime-requirements.txt \
 && pip wheel --index-url "${PIP_INDEX_URL}" --wheel-dir /wheels -r /wheels/runtime-requirements.txt

# Stage 2: this package as a wheel (pure Python, a few tens of kB).
FROM wheels AS package
WORKDIR /src
COPY setup.py manifest.yml README.md ./
COPY vseimageencoder ./vseimageencoder
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /pkg .

# The image: no compiler, no build stage's files. The venv is made here rather than copied
# from a build stage, so the multi-GB torch layer is a RUN step that a rebuild finds in its
# cache by its command, without hashing (or storing twice) gigabytes of copied files.
FROM ${BASE}
ARG PYTHON=python3
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN ${PYTHON} -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --index-url "${PIP_INDEX_URL}" --upgrade "pip<25" "setuptools<70" wheel
COPY requirements.txt /tmp/requirements.txt
# torch and torchvision as requirements.txt pins them, from TORCH_INDEX_URL (whose +cpu
# builds pip prefers at the same version), their dependencies within requirements.txt's
# bounds (numpy < 2). Headers go in the same step, so no layer keeps them.
RUN grep -E '^(torch|torchvision)[ =<>!~;]' /tmp/requirements.txt > /tmp/torch.txt \
 && pip install --index-url "${PIP_INDEX_URL}" --extra-index-url "${TORCH_INDEX_URL}" \
        -r /tmp/torch.txt -c /tmp/requirements.txt \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3*/site-packages/torch/include /tmp/torch.txt /tmp/requirements.txt
COPY --from=wheels /wheels /tmp/wheels
# jina's web assets are dropped in the same step.
RUN pip install --no-index --find-links /tmp/wheels -r /tmp/wheels/runtime-requirements.txt \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3*/site-packages/jina/resources/static /tmp/wheels
COPY --from=package /pkg /tmp/pkg
RUN pip install --no-deps --no-index --no-compile /tmp/pkg/*.whl \
 && rm -rf /tmp/pkg
WORKDIR /workspace
COPY config.yml text.yml manifest.yml ./
COPY vseimageencoder/_jina_plugin.py ./vseimageencoder/_jina_plugin.py
# Declared here, after the copies, so another model or source only redoes this step.
ARG MODEL=f30k_vse++_vggfull
ARG WEIGHTS_SOURCE=http://www.cs.toronto.edu/~faghri/vsepp/runs.tar
ARG VOCAB_SOURCE=http://www.cs.toronto.edu/~faghri/vsepp/vocab.tar
# Both towers are loaded once here, so an image that builds is one whose two YAMLs start.
RUN vseimageencoder download "${MODEL}" --source "${WEIGHTS_SOURCE}" --vocab-source "${VOCAB_SOURCE}" \
        --dest pretrained --no-progress \
 && python -c "from vseimageencoder.encoders import ImageEncoder, TextEncoder; ImageEncoder('pretrained'); TextEncoder('pretrained')"
# `jina pod` as jina 0.9.33 runs it, minus its version check against api.jina.ai and its
# public-IP lookups at every start (vseimageencoder/jina09/cli.py).
ENTRYPOINT ["python", "-m", "vseimageencoder.jina09.cli", "pod", "--uses", "config.yml"]
