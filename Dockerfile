# The VSEImageEncoder pod image: `docker run IMAGE --port-in 55555 --port-out 55556`.
# Tag it as jina's hub computes from manifest.yml: jinahub/pod.encoder.vseimageencoder:<version>-<jina>.
#
# Weights: put the checkpoint to bake in at ./pretrained/model_best.pth.tar before building
# (see README, "Getting the weights"); MODEL_DIR picks another folder of the build context.
ARG BASE=python:3.9-slim
FROM ${BASE}

# CPU-only torch wheels live on PyTorch's own index; PyPI's Linux wheels carry CUDA (~3 GB).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG MODEL_DIR=pretrained

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /workspace

COPY requirements.txt ./
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==2.8.0" "torchvision==0.23.0" \
 && pip install --index-url "${PIP_INDEX_URL}" -r requirements.txt \
 && pip uninstall -y pytest

COPY setup.py manifest.yml README.md config.yml ./
COPY vseimageencoder ./vseimageencoder
RUN pip install --index-url "${PIP_INDEX_URL}" --no-deps .

COPY ${MODEL_DIR}/model_best.pth.tar ./pretrained/model_best.pth.tar

ENTRYPOINT ["jina", "pod", "--uses", "config.yml"]
