"""TensorFlow on a fixed number of threads, for the benchmarks' Python children.

TensorFlow reads TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS (as tfjs-node's TensorFlow does)
when it loads, so `tensorflow_with_threads` sets them, imports TensorFlow, and also sets
tf.config.threading to the same values.
"""

import os


def tensorflow_with_threads(threads):
    """Imports and returns TensorFlow running `threads` intra- and inter-op threads."""
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf
