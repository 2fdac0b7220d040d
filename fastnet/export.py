"""A trained network as an ONNX model: ``net.to_onnx(path)`` or ``fastnet export WEIGHTS OUT.onnx``.

The model is the test-time network (what ``predict`` computes) in float32 over standard operators
of ONNX opset ``OPSET``: Conv, MaxPool, Flatten, Gemm, Relu, Sigmoid, BatchNormalization (with the
running statistics and the book's ε), dropout as its test-time scaling (Mul by 1 − ratio). Input
``input``: (N, C, H, W) images for a network of images, (N, D) rows otherwise, N dynamic; outputs
``logits`` (N, classes) and ``probabilities`` (their softmax). The metadata records fastnet's
version and the network's architecture (what ``save_weights`` records). Needs the ``onnx`` package
(``pip install -e ".[onnx]"``; onnxruntime runs the model).
"""

import json

import numpy as np

from .kernels import records as R
from .kernels.activations import ACTIVATION_CODES

OPSET = 17
BN_EPSILON = 10e-7  # the book's ε under the square root (kernels.batchnorm)
ACTIVATION_OPS = {"relu": "Relu", "sigmoid": "Sigmoid"}
ACTIVATION_NAMES = {code: name for name, code in ACTIVATION_CODES.items()}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError('fastnet: exporting to ONNX needs the onnx package: pip install "fastnet-dlfs[onnx]" '
                          '(from a checkout: pip install -e ".[onnx]")') from None  # fmt: skip
    return onnx


def engine_network(net):
    """The engine network behind ``net`` (a ``Sequential`` or one of the book's classes)."""
    from .net import TwoLayerNet
    from .sequential import Sequential

    if isinstance(net, TwoLayerNet):
        return net._twin()
    if isinstance(net, Sequential):
        net._sync_params()
        return net
    raise TypeError(f"to_onnx: exports fastnet's networks, not {type(net).__name__}")


def to_onnx(net, path=None):
    """``net`` at test time as an ONNX model (``onnx.ModelProto``), checked by ``onnx.checker``;
    written to ``path`` (atomically) if given."""
    from . import __version__
    from ._atomic import atomic_write_bytes
    from .weights import architecture

    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    engine = engine_network(net)
    rec, coef = engine.records, engine.net.coef
    names = _parameter_names(rec)
    nodes, initializers = [], []

    def constant(name, value):
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    images = engine.input_dim[1:] != (1, 1) or rec[0, R.KIND] in (R.CONV, R.POOL)
    shape = ["N", *engine.input_dim] if images else ["N", int(rec[0, R.IN_SIZE])]
    h, four_d = "input", images
    for l in range(rec.shape[0]):
        kind, out = rec[l, R.KIND], f"layer{l + 1}"
        if kind == R.CONV:
            w, b = names[l]
            p = int(rec[l, R.PAD])
            nodes.append(helper.make_node("Conv", [h, constant(w, engine.params[w]), constant(b, engine.params[b])],
                                          [out], kernel_shape=[int(rec[l, R.FH]), int(rec[l, R.FW])],
                                          strides=[int(rec[l, R.STRIDE])] * 2, pads=[p] * 4))  # fmt: skip
        elif kind == R.POOL:
            p = int(rec[l, R.PAD])
            nodes.append(helper.make_node("MaxPool", [h], [out], kernel_shape=[int(rec[l, R.FH]), int(rec[l, R.FW])],
                                          strides=[int(rec[l, R.STRIDE])] * 2, pads=[p] * 4))  # fmt: skip
        elif kind == R.AFFINE:
            if four_d:  # the book's flattening, (C, H, W) order
                nodes.append(helper.make_node("Flatten", [h], [f"{out}_flat"], axis=1))
                h, four_d = f"{out}_flat", False
            w, b = names[l]
            nodes.append(helper.make_node("Gemm", [h, constant(w, engine.params[w]), constant(b, engine.params[b])],
                                          [out]))  # fmt: skip
        elif kind == R.BATCHNORM:
            g, b = names[l]
            j = g[len("gamma") :]
            nodes.append(helper.make_node(
                "BatchNormalization",
                [h, constant(g, engine.params[g]), constant(b, engine.params[b]),
                 constant(f"running_mean{j}", engine.running[f"running_mean{j}"]),
                 constant(f"running_var{j}", engine.running[f"running_var{j}"])],
                [out], epsilon=BN_EPSILON))  # fmt: skip
        else:
            scale = constant(f"{out}_keep", np.array(1.0 - coef[l, R.RATIO]))
            nodes.append(helper.make_node("Mul", [h, scale], [out]))
        h = out
        act = ACTIVATION_NAMES[int(rec[l, R.ACT])]
        if act in ACTIVATION_OPS:
            nodes.append(helper.make_node(ACTIVATION_OPS[act], [h], [f"{out}_{act}"]))
            h = f"{out}_{act}"
    nodes.append(helper.make_node("Identity", [h], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    classes = int(rec[-1, R.OUT_SIZE])
    graph = helper.make_graph(
        nodes,
        f"fastnet {type(net).__name__}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes])],
        initializers,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fastnet",
                              producer_version=__version__)  # fmt: skip
    model.ir_version = 8  # what onnxruntime of the last years reads (opset 17 needs 8)
    helper.set_model_props(model, {"fastnet_version": __version__, "network": json.dumps(architecture(net))})
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        atomic_write_bytes(path, model.SerializeToString())
    return model


def _parameter_names(rec):
    """Layer l -> (W name, b name) or (gamma name, beta name), as ``params`` names them."""
    names, weighted, norms = {}, 0, 0
    for l in range(rec.shape[0]):
        if rec[l, R.KIND] in (R.CONV, R.AFFINE):
            weighted += 1
            names[l] = (f"W{weighted}", f"b{weighted}")
        elif rec[l, R.KIND] == R.BATCHNORM:
            norms += 1
            names[l] = (f"gamma{norms}", f"beta{norms}")
    return names
