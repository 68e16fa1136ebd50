"""The Python floor of the inference benchmark (bench/inference.ts): Python's onnxruntime and a
TensorFlow graph on the very files `compofa extract` wrote.

    python bench/inference_floor.py --threads 2

- onnxruntime: an InferenceSession on the subnet's model.onnx with the options onnxruntime-node
  gets in trainer/engine.ts (CPU execution provider, every graph optimisation, sequential
  execution, intra- and inter-op threads = --threads).
- TF graph: the subnet's model.json and weights.bin (TensorFlow.js layers format) rebuilt layer by
  layer as the same stock Keras layers, with the same weights, and called through one
  `tf.function` (graph mode, no XLA). The rebuild is checked: its output must agree with
  onnxruntime's on the same images (the reply reports the largest difference).

Threads: TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS and tf.config.threading are set to
--threads before TensorFlow runs anything; oneDNN is left at TensorFlow's default unless
TF_ENABLE_ONEDNN_OPTS is set.

It prints one JSON line when ready (versions and settings), then reads one JSON command per line
on stdin and answers each with one JSON line on stdout (logs go to stderr):

    {"cmd": "load", "key": K, "dir": D}    loads D/model.onnx and D/model.json as K; answers the
                                           input shape and the rebuild's largest difference from
                                           onnxruntime, absolute and relative to the outputs'
                                           spread
    {"cmd": "time", "key": K, "engine": "onnxruntime" | "tf", "batch": B, "warmup": W, "calls": N}
                                           W untimed calls, then N timed calls of batch B; answers
                                           {"ms": [...]} (time.perf_counter around each call, up to
                                           the output's values in host memory)
    {"cmd": "exit"}
"""

import argparse
import json
import os
import sys
import time

from tf_threads import tensorflow_with_threads


def log(message):
    print(f"[inference-floor] {message}", file=sys.stderr, flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, required=True, help="intra- and inter-op threads")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


ARGS = parse_args()
tf = tensorflow_with_threads(ARGS.threads)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402


# --- model.json (TensorFlow.js layers format) as Keras layers ----------------------------------

def _pick(config, *keys):
    return {key: config[key] for key in keys if key in config}


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value


def _conv_args(config):
    args = _pick(config, "padding", "activation", "use_bias", "data_format")
    args["kernel_size"] = _tuple(config["kernel_size"])
    args["strides"] = _tuple(config["strides"])
    args["dilation_rate"] = _tuple(config.get("dilation_rate", [1, 1]))
    return args


# The stock layers that extracted subnets are made of (trainer/extract.ts), each from its
# TensorFlow.js config. Anything else is refused rather than guessed.
LAYERS = {
    "Conv2D": lambda c, n: layers.Conv2D(c["filters"], name=n, **_conv_args(c)),
    "DepthwiseConv2D": lambda c, n: layers.DepthwiseConv2D(
        depth_multiplier=c.get("depth_multiplier", 1), name=n, **_conv_args(c)
    ),
    "BatchNormalization": lambda c, n: layers.BatchNormalization(
        name=n, **_pick(c, "axis", "momentum", "epsilon", "center", "scale")
    ),
    "ReLU": lambda c, n: layers.ReLU(max_value=c.get("max_value"), name=n),
    "Activation": lambda c, n: layers.Activation(c["activation"], name=n),
    "Multiply": lambda c, n: layers.Multiply(name=n),
    "Add": lambda c, n: layers.Add(name=n),
    "GlobalAveragePooling2D": lambda c, n: layers.GlobalAveragePooling2D(
        data_format=c.get("data_format", "channels_last"), name=n
    ),
    "Reshape": lambda c, n: layers.Reshape(tuple(c["target_shape"]), name=n),
    "Flatten": lambda c, n: layers.Flatten(name=n),
    "Dropout": lambda c, n: layers.Dropout(c["rate"], name=n),
    "Dense": lambda c, n: layers.Dense(c["units"], name=n, **_pick(c, "activation", "use_bias")),
}

# TensorFlow.js weight names whose Keras 3 variable is called otherwise.
WEIGHT_ALIASES = {"depthwise_kernel": "kernel"}


def read_weights(model_dir, manifest):
    """{"layer/weight": array} from the weights manifest and its binary shards."""
    weights = {}
    for group in manifest:
        data = b"".join(open(os.path.join(model_dir, path), "rb").read() for path in group["paths"])
        offset = 0
        for entry in group["weights"]:
            if entry["dtype"] != "float32" or "quantization" in entry:
                raise ValueError(f"{entry['name']}: only unquantized float32 weights are supported")
            count = int(np.prod(entry["shape"], dtype=np.int64))
            array = np.frombuffer(data, dtype="<f4", count=count, offset=offset)
            weights[entry["name"]] = array.reshape(entry["shape"])
            offset += 4 * count
        if offset != len(data):
            raise ValueError(f"weights manifest covers {offset} of {len(data)} bytes")
    return weights


def load_keras(model_dir):
    """The Keras model of model_dir/model.json, with its weights."""
    with open(os.path.join(model_dir, "model.json")) as f:
        artifact = json.load(f)
    topology = artifact["modelTopology"]
    if topology["class_name"] not in ("Model", "Functional"):
        raise ValueError(f"expected a functional model, got {topology['class_name']}")
    config = topology["config"]
    tensors = {}
    built = {}
    for spec in config["layers"]:
        name, kind, layer_config = spec["name"], spec["class_name"], spec["config"]
        if kind == "InputLayer":
            shape = layer_config["batch_input_shape"][1:]
            tensors[name] = keras.Input(tuple(shape), name=name, dtype=layer_config["dtype"])
            continue
        if kind not in LAYERS:
            raise ValueError(f"layer {name}: {kind} is not supported")
        if len(spec["inbound_nodes"]) != 1:
            raise ValueError(f"layer {name}: shared layers are not supported")
        layer = LAYERS[kind](layer_config, name)
        inbound = [tensors[node[0]] for node in spec["inbound_nodes"][0]]
        tensors[name] = layer(inbound if len(inbound) > 1 else inbound[0])
        built[name] = layer
    (input_name, _, _), = config["input_layers"]
    (output_name, _, _), = config["output_layers"]
    model = keras.Model(tensors[input_name], tensors[output_name], name=config["name"])

    weights = read_weights(model_dir, artifact["weightsManifest"])
    used = set()
    for name, layer in built.items():
        values = []
        for variable in layer.weights:
            candidates = [
                key for key in weights
                if key.startswith(f"{name}/")
                and variable.name in (key[len(name) + 1:], WEIGHT_ALIASES.get(key[len(name) + 1:]))
            ]
            if len(candidates) != 1:
                raise ValueError(f"layer {name}: no single weight for {variable.name}: {candidates}")
            value = weights[candidates[0]]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"{candidates[0]}: shape {value.shape}, Keras wants {variable.shape}")
            values.append(value)
            used.add(candidates[0])
        if values:
            layer.set_weights(values)
    unused = sorted(set(weights) - used)
    if unused:
        raise ValueError(f"weights not used by the rebuilt model: {unused[:5]}")
    return model, artifact.get("userDefinedMetadata", {}).get("compofa", {})


# --- The two engines ---------------------------------------------------------------------------

class Subnet:
    def __init__(self, model_dir):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = ARGS.threads
        options.inter_op_num_threads = ARGS.threads
        options.log_severity_level = 2
        self.session = ort.InferenceSession(
            os.path.join(model_dir, "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        (onnx_input,) = self.session.get_inputs()
        self.input_name = onnx_input.name
        self.model, self.metadata = load_keras(model_dir)
        self.shape = tuple(self.model.inputs[0].shape[1:])
        self.graph = tf.function(
            lambda x: self.model(x, training=False),
            input_signature=[tf.TensorSpec((None, *self.shape), tf.float32)],
            jit_compile=False,
        )
        self.inputs = {}

    def images(self, batch):
        if batch not in self.inputs:
            rng = np.random.default_rng(ARGS.seed + batch)
            self.inputs[batch] = rng.random((batch, *self.shape), dtype=np.float32)
        return self.inputs[batch]

    def call(self, engine, x):
        if engine == "onnxruntime":
            return self.session.run(None, {self.input_name: x})[0]
        if engine == "tf":
            return self.graph(x).numpy()
        raise ValueError(f"unknown engine {engine}")

    def difference(self):
        """The largest difference of the two engines' outputs, absolute and relative to how far
        onnxruntime's are from their mean (an untrained subnet's probabilities are all close to
        1/classes, so the absolute difference alone would say little)."""
        x = self.images(2)
        reference = self.call("onnxruntime", x)
        difference = float(np.max(np.abs(reference - self.call("tf", x))))
        spread = float(np.max(np.abs(reference - reference.mean(axis=1, keepdims=True))))
        return difference, difference / spread if spread > 0 else float("inf")


def main():
    print(json.dumps({
        "ready": True,
        "python": sys.version.split()[0],
        "onnxruntime": ort.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "threads": ARGS.threads,
        "tfIntraOpThreads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tfInterOpThreads": tf.config.threading.get_inter_op_parallelism_threads(),
        "oneDnn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "TensorFlow's default"),
    }), flush=True)
    subnets = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        try:
            if command["cmd"] == "exit":
                break
            if command["cmd"] == "load":
                start = time.perf_counter()
                subnet = Subnet(command["dir"])
                subnets[command["key"]] = subnet
                difference, relative = subnet.difference()
                reply = {
                    "shape": list(subnet.shape),
                    "maxDifference": difference,
                    "relativeDifference": relative,
                    "layers": len(subnet.model.layers),
                    "subnet": subnet.metadata.get("subnet"),
                    "seconds": time.perf_counter() - start,
                }
            elif command["cmd"] == "time":
                subnet = subnets[command["key"]]
                x = subnet.images(command["batch"])
                for _ in range(command.get("warmup", 0)):
                    subnet.call(command["engine"], x)
                times = []
                for _ in range(command["calls"]):
                    start = time.perf_counter()
                    subnet.call(command["engine"], x)
                    times.append((time.perf_counter() - start) * 1000)
                reply = {"ms": times}
            else:
                reply = {"error": f"unknown command {command['cmd']}"}
        except Exception as error:  # noqa: BLE001 - answered, the benchmark stops on it
            reply = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
