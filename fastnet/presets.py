"""The networks the train command builds from its options: the book's TwoLayerNet, a
MultiLayerNet with chapter 6's options, or one of the book's convnets; presets and defaults."""

import math

import numpy as np

# Settings chosen on a validation split (the last 10,000 of the 60,000 training images, held out):
# see docs/PERFORMANCE.md for the runs behind them and the test accuracy they reach.
MNIST_LAYERS = "conv32x3p1,relu,pool2,bn,conv64x3p1,relu,pool2,bn,affine256,bn,relu,dropout0.4,affine10"
PRESETS = {
    "accurate": {"hidden": "256,256", "optimizer": "adam", "lr": 1e-3, "dropout": 0.2, "lr_decay": 0.9,
                 "epochs": 20, "batch_size": 100},
    # a batch-norm convnet (fastnet.Sequential): two 3×3 convs with batch norm and pools, a hidden layer with
    # batch norm and dropout; each epoch's images moved by up to 2 pixels (digits: 25 epochs, lr x 0.88 per
    # epoch) or half of them mirrored (clothes: 15 epochs, x 0.85); the training accuracy scored on 10,000
    # images per epoch to keep evaluations short. On digits, batch norm after each pool, not before its
    # ReLU: the convolution and its pool then run in one pass (chosen on the validation split; faster too)
    "accurate-conv": {"layers": "conv32x3p1,bn,relu,pool2,conv64x3p1,bn,relu,pool2,affine256,bn,relu,dropout0.4,"
                                "affine10",
                      "optimizer": "adam", "lr": 1e-3, "lr_decay": 0.85, "epochs": 15, "batch_size": 100,
                      "eval_size": 10_000,
                      "by_dataset": {"mnist": {"shift": 2, "epochs": 25, "lr_decay": 0.88, "layers": MNIST_LAYERS},
                                     "fashion-mnist": {"flip": True}}},
    # the book's DeepConvNet (dropout 0.5), Adam 1e-3 decayed by 0.9 after each epoch, 15 epochs
    "accurate-deep-conv": {"net": "deep-conv", "optimizer": "adam", "lr": 1e-3, "lr_decay": 0.9, "epochs": 15,
                           "batch_size": 100},
}  # fmt: skip
DEFAULTS = {"hidden": "50", "batch_size": 100, "lr_decay": 1.0, "iters": 10_000, "shift": 0, "flip": False,
            "rotate": 0.0, "zoom": 0.0}  # fmt: skip


def apply_preset(args):
    """Fill the options the user did not give from ``--preset`` (if any), then from the defaults."""
    preset = dict(PRESETS.get(args.preset or "", {}))
    preset.update(preset.pop("by_dataset", {}).get(args.dataset, {}))  # e.g. the augmentation that suits it
    args.hidden_given = getattr(args, "hidden", None) is not None or "hidden" in preset
    for key, value in {**DEFAULTS, **preset}.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)


def build_network(args, inputs, classes, seed):
    """(network, optimizer) from the train command's options: the book's TwoLayerNet with SGD for one
    hidden layer and no chapter-6 option, else a MultiLayerNet with the optimizer asked for."""
    from .multilayer import MultiLayerNet
    from .net import TwoLayerNet
    from .optim import OPTIMIZERS

    if getattr(args, "layers", None):
        return _sequential(args, inputs, classes, seed)
    if args.net in CONVNETS:
        return _convnet(args, inputs, classes, seed)
    hidden = parse_sizes(args.hidden)
    chapter6 = [args.optimizer, args.activation, args.init, args.weight_decay, args.dropout, args.batchnorm or None]
    dtype = np.dtype(args.dtype)
    if len(hidden) == 1 and all(option is None for option in chapter6):
        std = 0.01 if args.weight_init_std is None else args.weight_init_std
        net = TwoLayerNet(inputs, hidden[0], classes, weight_init_std=std, dtype=dtype, seed=seed)
        return net, OPTIMIZERS["sgd"](0.1 if args.lr is None else args.lr)
    init = args.init or (args.weight_init_std if args.weight_init_std is not None else "he")
    net = MultiLayerNet(inputs, hidden, classes, activation=args.activation or "relu", weight_init_std=init,
                        weight_decay_lambda=args.weight_decay or 0.0, use_dropout=args.dropout is not None,
                        dropout_ratio=0.5 if args.dropout is None else args.dropout, use_batchnorm=args.batchnorm,
                        dtype=dtype, seed=seed)  # fmt: skip
    optimizer_class = OPTIMIZERS[args.optimizer or "sgd"]
    return net, (optimizer_class() if args.lr is None else optimizer_class(lr=args.lr))


CONVNETS = ("simple-conv", "deep-conv")  # --net: chapter 7's SimpleConvNet, chapter 8's DeepConvNet


def new_convnet(name, input_dim=(1, 28, 28), classes=10, dtype=np.float32, seed=None, **options):
    """The book's convnet called ``name`` (``CONVNETS``) with its defaults."""
    from .convnet import DeepConvNet, SimpleConvNet

    if name == "simple-conv":
        return SimpleConvNet(input_dim, output_size=classes, dtype=dtype, seed=seed, **options)
    return DeepConvNet(input_dim, output_size=classes, dtype=dtype, seed=seed, **options)


def _convnet(args, inputs, classes, seed):
    """SimpleConvNet or DeepConvNet with the book's settings (Adam 0.001) for square one-channel images."""
    from .optim import OPTIMIZERS

    side = math.isqrt(inputs)
    if side * side != inputs:
        raise ValueError(f"--net {args.net} takes square one-channel images; {args.dataset} has {inputs} inputs")
    unused = [name for name in ("activation", "init", "weight_decay") if getattr(args, name) is not None]
    if args.net == "simple-conv" and args.dropout is not None:
        unused.append("dropout")
    if args.net == "deep-conv" and args.weight_init_std is not None:
        unused.append("weight_init_std")
    hidden = parse_sizes(args.hidden) if getattr(args, "hidden_given", False) else []
    if unused or args.batchnorm or len(hidden) > 1:
        given = ", ".join("--" + n.replace("_", "-") for n in unused + (["batchnorm"] if args.batchnorm else []))
        raise ValueError(f"--net {args.net}: the book's network has no {given or '--hidden list'} option")
    options = {"hidden_size": hidden[0]} if hidden else {}
    if args.net == "simple-conv":
        options["weight_init_std"] = 0.01 if args.weight_init_std is None else args.weight_init_std
    elif args.dropout is not None:
        options["dropout_ratio"] = args.dropout
    net = new_convnet(args.net, (1, side, side), classes, np.dtype(args.dtype), seed, **options)
    optimizer_class = OPTIMIZERS[args.optimizer or "adam"]
    return net, (optimizer_class() if args.lr is None else optimizer_class(lr=args.lr))


def _sequential(args, inputs, classes, seed):
    """A ``Sequential`` of ``--layers`` (images: square one-channel, when it has a Conv or MaxPool);
    --net and --hidden beside it were refused before the data loaded (``check_train_options``)."""
    from . import layers as L
    from .optim import OPTIMIZERS
    from .sequential import Sequential

    given = [name for name in ("activation", "init", "weight_decay", "dropout", "weight_init_std")
             if getattr(args, name) is not None] + (["batchnorm"] if args.batchnorm else [])  # fmt: skip
    if given:
        raise ValueError(f"--layers gives the whole network: {', '.join('--' + n.replace('_', '-') for n in given)} "
                         "do not apply (write them into the layers)")  # fmt: skip
    layers = L.parse_layers(args.layers)
    input_dim = layers_input(layers, inputs, args.dataset)
    last = [layer for layer in layers if isinstance(layer, L.Affine)]
    if not last or last[-1].args["units"] < classes:
        units = last[-1].args["units"] if last else "no"
        raise ValueError(f"--layers: the last affine layer has {units} units; {args.dataset} has {classes} classes")
    net = Sequential(input_dim, layers, dtype=np.dtype(args.dtype), seed=seed)
    optimizer_class = OPTIMIZERS[args.optimizer or "adam"]
    return net, (optimizer_class() if args.lr is None else optimizer_class(lr=args.lr))


def layers_input(layers, inputs, data="the data"):
    """The input shape of a ``--layers`` network fed rows of ``inputs`` values: square one-channel
    images when it has a convolution or pool, else the rows as they are."""
    from . import layers as L

    if not any(isinstance(layer, (L.Conv, L.MaxPool)) for layer in layers):
        return inputs
    side = math.isqrt(inputs)
    if side * side != inputs:
        raise ValueError(f"--layers: convolutions take square one-channel images; {data} has {inputs} inputs")
    return (1, side, side)


def parse_sizes(text):
    """'100,100,100' -> [100, 100, 100] (each at least 1)."""
    try:
        sizes = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise ValueError(f"--hidden {text!r}: expected sizes separated by commas, e.g. 100,100") from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--hidden {text!r}: every size must be at least 1")
    return sizes
