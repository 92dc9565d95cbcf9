# The project on top of Unsloth's own image, which brings the CUDA build of torch, xformers,
# bitsandbytes and triton matched to each other, plus its JupyterLab service.
#
#   docker build -t pii-redact .
#   docker run -d --gpus all -p 8888:8888 --name pii-redact pii-redact
#   docker exec -ti pii-redact bash      # lands in /workspace/work
#   python finetune.py
#
# Add `-v ./:/workspace/work` to work on the checkout instead of the copy baked in; the same
# commands also run unchanged in the stock `unsloth/unsloth` container mounted that way.
#
# The base is pinned: `latest` is rebuilt daily and would change torch/CUDA under the project.
# Tags are listed at https://hub.docker.com/r/unsloth/unsloth/tags; release tags name the unsloth
# and torch versions inside (<unsloth>-pt<torch>-...-cu<cuda>-...). To move it, pick a newer
# release tag whose torch satisfies unsloth's range in requirements.txt (torch<2.15 for
# unsloth 2026.10.9) and, for a reproducible build, append the digest that
# `docker buildx imagetools inspect unsloth/unsloth:<tag>` prints (`...:<tag>@sha256:<digest>`).
# Or override it per build: `docker build --build-arg BASE_IMAGE=unsloth/unsloth:<tag> .`
ARG BASE_IMAGE=unsloth/unsloth:2026.4.6-pt2.10.0-vllm-0.16.0-cu12.8-studio-release-v0.1.36-beta-fixes
FROM ${BASE_IMAGE}

# The seed's mount point: the default relative paths (data/, outputs/) land here.
WORKDIR /workspace/work

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# bash with pipefail, so a failing command on the left of a pipe fails the build.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Requirements first, so editing the code does not reinstall them. requirements.txt pins torch
# for CPU/CI installs; here the image's torch and its CUDA companions must stay as they are, so the
# torch line is dropped and the installed versions of those packages become constraints: pip then
# fails the build on a conflict instead of silently swapping in another (CPU or wrong-CUDA) torch.
# No USER switch: the unsloth image runs as root and its Python environment is root's to change.
COPY requirements.txt ./
RUN python -m pip list --format=freeze \
      | grep -iE '^(torch|torchvision|torchaudio|triton|xformers|bitsandbytes|vllm)==' \
      > /tmp/image-constraints.txt \
 && grep -viE '^torch==' requirements.txt > /tmp/requirements-image.txt \
 && python -m pip install --no-cache-dir -r /tmp/requirements-image.txt -c /tmp/image-constraints.txt \
 && rm /tmp/image-constraints.txt /tmp/requirements-image.txt

# The scripts, package and configs; data/, outputs/ and the rest are kept out by .dockerignore.
# pii_redaction_train.json comes along when it is in the checkout.
COPY . ./

# ENTRYPOINT and CMD stay the base image's: they start its services (JupyterLab on 8888) and keep
# the container running, so `docker exec` works as in the seed's flow.
