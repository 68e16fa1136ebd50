"""The Keras side of the training-throughput benchmark (bench/training-throughput.ts).

Builds, in Keras on TensorFlow 2.21, the network that a JSON description names (the supernet's
largest subnet of a preset, as bench/training-throughput.ts emits it from compofa/cost.ts
`subnetShape`: one source of truth for both sides), compiles it the Keras default way (graph mode
through tf.function; XLA left at Keras's 'auto', which is off on CPU-only machines) with SGD with
Nesterov momentum and weight decay and a label-smoothing cross-entropy, and times
`train_on_batch` on a fixed batch of random images.

    python bench/keras_training_step.py --model model.json --batch 32 --threads 2 [--seed 0]

It then reads one JSON command per line on stdin and answers each with one JSON line on stdout
(logs go to stderr):

    {"cmd": "steps", "steps": N}     run N training steps; answers {"seconds": ..., "loss": ...,
                                     "usage": CPU ms and minor page faults of the process}
    {"cmd": "profile", "steps": N, "dir": D}
                                     trace N steps with TensorFlow's profiler into D; answers the
                                     op types executed per step with their count and time
    {"cmd": "exit"}

Threads: TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS are set from --threads before TensorFlow
loads (tfjs-node's TensorFlow reads the same variables), and tf.config.threading is set to the
same values.
"""

import argparse
import glob
import json
import os
import re
import resource
import sys
import time
from collections import defaultdict

from tf_threads import tensorflow_with_threads


def log(message):
    print(f"[keras] {message}", file=sys.stderr, flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="JSON description of the network")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True, help="intra- and inter-op threads")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


ARGS = parse_args()
tf = tensorflow_with_threads(ARGS.threads)

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402

ACTIVATIONS = {"relu": "relu", "h_swish": "hard_swish", "h_sigmoid": "hard_sigmoid"}


def build_model(description):
    """The network of `description`, layer by layer as trainer/supernet.ts runs it."""
    # Conventions this builder hard-codes; refuse a description that asks for others.
    for key, expected in (("padding", "same"), ("convolutionBias", False)):
        if description[key] != expected:
            raise ValueError(f"{key} {description[key]!r} is not supported (expected {expected!r})")
    if description["squeezeExcite"]["pool"] != "mean":
        raise ValueError("only a mean-pooled squeeze-excite is supported")
    bn = description["batchNorm"]
    se_spec = description["squeezeExcite"]
    init = keras.initializers.VarianceScaling(2.0, "fan_out", "normal", seed=ARGS.seed)

    def norm(x, name):
        # Keras's momentum is the weight of the old value, as BN_MOMENTUM in supernet.ts.
        return layers.BatchNormalization(
            epsilon=bn["epsilon"], momentum=bn["momentum"], name=f"{name}.bn"
        )(x)

    def act(x, activation, name):
        return layers.Activation(ACTIVATIONS[activation], name=f"{name}.act")(x)

    size = description["resolution"]
    inputs = keras.Input((size, size, description["inputChannels"]), name="images")
    stem = description["stem"]
    x = layers.Conv2D(
        stem["outChannels"],
        stem["kernelSize"],
        strides=stem["stride"],
        padding="same",
        use_bias=False,
        kernel_initializer=init,
        name="stem.conv",
    )(inputs)
    x = act(norm(x, "stem"), stem["activation"], "stem")
    for block in description["blocks"]:
        name = block["name"]
        shortcut = x
        h = x
        if block["expandRatio"] != 1:
            h = layers.Conv2D(
                block["midChannels"], 1, use_bias=False, kernel_initializer=init,
                name=f"{name}.expand",
            )(h)
            h = act(norm(h, f"{name}.expand"), block["activation"], f"{name}.expand")
        h = layers.DepthwiseConv2D(
            block["kernelSize"],
            strides=block["stride"],
            padding="same",
            use_bias=False,
            depthwise_initializer=init,
            name=f"{name}.depthwise",
        )(h)
        h = act(norm(h, f"{name}.depthwise"), block["activation"], f"{name}.depthwise")
        if block["squeezeExciteChannels"] > 0:
            gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}.se.pool")(h)
            gate = layers.Conv2D(
                block["squeezeExciteChannels"], 1, use_bias=se_spec["bias"],
                activation=ACTIVATIONS[se_spec["reduceActivation"]], kernel_initializer=init,
                name=f"{name}.se.reduce",
            )(gate)
            gate = layers.Conv2D(
                block["midChannels"], 1, use_bias=se_spec["bias"],
                activation=ACTIVATIONS[se_spec["gateActivation"]], kernel_initializer=init,
                name=f"{name}.se.expand",
            )(gate)
            h = layers.Multiply(name=f"{name}.se.scale")([h, gate])
        h = layers.Conv2D(
            block["outChannels"], 1, use_bias=False, kernel_initializer=init,
            name=f"{name}.project",
        )(h)
        h = norm(h, f"{name}.project")
        x = layers.Add(name=f"{name}.residual")([h, shortcut]) if block["residual"] else h
    head = description["head"]
    x = layers.Conv2D(
        head["channels"], 1, use_bias=False, kernel_initializer=init, name="head.conv"
    )(x)
    x = act(norm(x, "head"), head["activation"], "head")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    feature = description["feature"]
    x = layers.Dense(
        feature["channels"], use_bias=feature["bias"],
        activation=ACTIVATIONS[feature["activation"]], name="feature",
    )(x)
    if description["dropoutRate"] > 0:
        x = layers.Dropout(description["dropoutRate"], seed=ARGS.seed, name="dropout")(x)
    logits = layers.Dense(description["numClasses"], name="classifier")(x)
    return keras.Model(inputs, logits, name=description["subnetId"])


def compile_model(model, training):
    optimizer = keras.optimizers.SGD(
        learning_rate=training["learningRate"],
        momentum=training["momentum"],
        nesterov=training["nesterov"],
        weight_decay=training["weightDecay"],
    )
    optimizer.exclude_from_weight_decay(var_names=training["weightDecayExcludes"])
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=training["labelSmoothing"]
        ),
    )


def profile_steps(model, x, y, steps, directory):
    """Op types executed per step, from a TensorFlow profiler trace (host CPU plane)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    model.train_on_batch(x, y)
    tf.profiler.experimental.start(directory)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    seconds = time.perf_counter() - start
    tf.profiler.experimental.stop()
    files = sorted(glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True))
    if not files:
        return {"error": f"no .xplane.pb under {directory}"}
    space = xplane_pb2.XSpace()
    with open(files[-1], "rb") as f:
        space.ParseFromString(f.read())
    ops = defaultdict(lambda: [0, 0.0])
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            # Graph ops run on the executor's inter-op threads, as events "<node name>:<op type>";
            # "Class::Method" events are the runtime's own regions.
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or "::" in name:
                    continue
                # oneDNN's graph pass renames what it runs (_MklNativeConv2D): keep the TF name.
                entry = ops[re.sub(r"^_Mkl(Native)?", "", name.rsplit(":", 1)[1])]
                entry[0] += 1
                entry[1] += event.duration_ps / 1e9
    per_step = {
        op: {"count": count / steps, "ms": ms / steps}
        for op, (count, ms) in sorted(ops.items(), key=lambda item: -item[1][1])
    }
    # Op times are summed over the executor's threads, which run independent ops concurrently.
    return {"steps": steps, "stepMs": seconds * 1000 / steps, "ops": per_step}


def main():
    with open(ARGS.model) as f:
        description = json.load(f)
    model = build_model(description)
    compile_model(model, description["training"])
    rng = np.random.default_rng(ARGS.seed)
    size, channels = description["resolution"], description["inputChannels"]
    x = rng.random((ARGS.batch, size, size, channels), dtype=np.float32)
    labels = rng.integers(0, description["numClasses"], ARGS.batch)
    y = np.eye(description["numClasses"], dtype=np.float32)[labels]
    start = time.perf_counter()
    loss = float(model.train_on_batch(x, y))
    compile_seconds = time.perf_counter() - start
    log(
        f"{description['subnetId']}: {model.count_params()} parameters, batch {ARGS.batch}, "
        f"first step (tracing) {compile_seconds:.2f} s, loss {loss:.4f}"
    )
    ready = {
        "ready": True,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "params": model.count_params(),
        "trainableParams": int(sum(np.prod(v.shape) for v in model.trainable_weights)),
        "layers": len(model.layers),
        "jitCompile": bool(model.jit_compile),
        "runEagerly": bool(model.run_eagerly),
        "intraOpThreads": tf.config.threading.get_intra_op_parallelism_threads(),
        "interOpThreads": tf.config.threading.get_inter_op_parallelism_threads(),
        "env": {k: os.environ.get(k) for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                                               "TF_ENABLE_ONEDNN_OPTS")},
        "firstStepSeconds": compile_seconds,
    }
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        if command["cmd"] == "exit":
            break
        if command["cmd"] == "steps":
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            for _ in range(command["steps"]):
                loss = model.train_on_batch(x, y)
            seconds = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
            usage = {
                "userMs": (after.ru_utime - before.ru_utime) * 1000,
                "systemMs": (after.ru_stime - before.ru_stime) * 1000,
                "minorFaults": after.ru_minflt - before.ru_minflt,
            }
            print(json.dumps({"seconds": seconds, "loss": float(loss), "usage": usage}), flush=True)
        elif command["cmd"] == "profile":
            print(json.dumps(profile_steps(model, x, y, command["steps"], command["dir"])),
                  flush=True)
        else:
            print(json.dumps({"error": f"unknown command {command['cmd']}"}), flush=True)


if __name__ == "__main__":
    main()
