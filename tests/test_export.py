"""ONNX export: onnxruntime runs each kind of network fastnet trains and gets fastnet's logits."""

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from fastnet import DeepConvNet, MultiLayerNet, Sequential, SimpleConvNet, TwoLayerNet, optim  # noqa: E402
from fastnet import layers as L  # noqa: E402
from fastnet.cli import main  # noqa: E402

SMALL_CONV = {"filter_num": 4, "filter_size": 3, "pad": 1, "stride": 1}
NETWORKS = {
    "TwoLayerNet": (lambda: TwoLayerNet(144, 20, 10, weight_init_std=0.1, seed=1), (144,)),
    "MultiLayerNet": (lambda: MultiLayerNet(144, [30, 20], 10, activation="sigmoid", use_batchnorm=True,
                                            use_dropout=True, dropout_ratio=0.3, seed=2), (144,)),  # fmt: skip
    "SimpleConvNet": (lambda: SimpleConvNet((1, 12, 12), SMALL_CONV, 20, 10, seed=3), (1, 12, 12)),
    "DeepConvNet": (lambda: DeepConvNet((1, 16, 16), *[SMALL_CONV] * 6, hidden_size=20, seed=4), (1, 16, 16)),
    "Sequential": (lambda: Sequential((2, 12, 12), [
        L.Conv(6, 3, pad=1), L.BatchNorm(), L.ReLU(), L.MaxPool(2), L.Conv(5, (3, 2), stride=1), L.Sigmoid(),
        L.Dropout(0.2), L.Affine(16), L.BatchNorm(), L.ReLU(), L.Affine(10)], seed=5), (2, 12, 12)),
}  # fmt: skip


def run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits", "probabilities"], {"input": x})


@pytest.mark.parametrize("trained", [False, True], ids=["random", "trained"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_onnxruntime_gives_fastnets_logits(name, trained, tmp_path):
    make, shape = NETWORKS[name]
    net = make()
    rng = np.random.default_rng(0)
    x = rng.random((300, *shape)).astype(np.float32)
    if trained:  # running statistics and weights away from their start
        t = rng.integers(0, 10, 300)
        rows = x.reshape(300, -1)
        net.steps(rows, t, rng.integers(0, 300, (20, 30)), optim.Adam(0.01) if name != "TwoLayerNet" else 0.1)
    model = net.to_onnx(tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(tmp_path / "m.onnx"))
    logits, probabilities = run(model, x)
    expected = net.predict(x)
    scale = np.abs(expected).max()
    assert np.abs(logits - expected).max() <= 1e-5 * scale + 1e-6, np.abs(logits - expected).max() / scale
    assert (logits.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.99
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["network"])["network"] == name and meta["fastnet_version"]
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim][0] == "N"


def test_fastnet_export_command(tmp_path, capsys):
    net = Sequential(36, [L.Affine(8), L.ReLU(), L.Affine(3)], seed=0)
    net.save_params(tmp_path / "w.npz")
    assert main(["export", str(tmp_path / "w.npz"), str(tmp_path / "m.onnx")]) == 0
    assert "opset" in capsys.readouterr().out
    x = np.random.default_rng(1).random((5, 36)).astype(np.float32)
    np.testing.assert_allclose(run(onnx.load(tmp_path / "m.onnx"), x)[0], net.predict(x), rtol=1e-5, atol=1e-6)


def test_what_is_not_a_network_is_refused():
    from fastnet.export import to_onnx

    with pytest.raises(TypeError, match="exports fastnet's networks"):
        to_onnx(object())
