"""fastnet's predict next to onnxruntime's on the same network, interleaved in one process.

    python scripts/predict_vs_onnxruntime.py [--images 1000] [--rounds 10]

Each round times both on the same 1,000 images (float32; onnxruntime runs the network exported by
``fastnet.export`` with as many threads as fastnet's blocks, not spinning between runs), the one
first that went second in the round before, so the per-round ratio cancels what a shared machine
does meanwhile. Prints a markdown table: the medians and fastnet/onnxruntime per round, median
(min-max).
"""

import argparse

import numpy as np
import onnxruntime
from old_vs_new import interleaved, row

from fastnet import DeepConvNet, Sequential, SimpleConvNet, _cores

NETWORKS = [
    ("SimpleConvNet", lambda: SimpleConvNet(seed=0)),
    ("DeepConvNet", lambda: DeepConvNet(seed=0)),
    ("accurate-conv (batch norm)", lambda: Sequential.from_spec(
        "1x28x28:conv32x3p1,bn,relu,pool2,conv64x3p1,bn,relu,pool2,affine256,bn,relu,dropout0.4,affine10", seed=0)),
]  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    x = np.random.default_rng(0).random((args.images, 1, 28, 28), dtype=np.float32)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = _cores.BLOCKS or 1
    # onnxruntime's threads spin for a while after each run: taking the cores from whatever runs next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    print(f"| {args.images:,} images, float32 | onnxruntime ms | fastnet ms | fastnet / onnxruntime per round, "
          "median (min-max) |")  # fmt: skip
    print("|---|---:|---:|---:|")
    for name, make in NETWORKS:
        net = make()
        session = onnxruntime.InferenceSession(net.to_onnx().SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])  # fmt: skip
        feed = {session.get_inputs()[0].name: x}
        pair = (lambda: session.run(None, feed), lambda: net.predict(x))
        expected = pair[1]()
        np.testing.assert_allclose(pair[0]()[0], expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())  # warm
        print(row(name, interleaved(pair, args.rounds), unit=1e3, decimals=2))


if __name__ == "__main__":
    main()
