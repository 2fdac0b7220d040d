"""Score convnet settings on a validation split of the training set, as the accurate-conv preset
was chosen: 10,000 of the 60,000 training images held out (seed 0), the rest trained on with Adam
1e-3 and batch 100, the held-out images scored after each epoch. The test set is not touched.

    python scripts/preset_validation.py --dataset fashion-mnist --flip            # the preset's net
    python scripts/preset_validation.py --dataset mnist --shift 2 --lr-decay 0.85
    python scripts/preset_validation.py --dataset mnist --layers conv32x3p1,bn,relu,pool2,affine10
    python scripts/preset_validation.py --dataset fashion-mnist --net deep-conv --dropout 0.5
    python scripts/preset_validation.py --dataset mnist --shift 2 --lr-decay 0.88 --epochs 25 --average-last 1,3,5

With ``--average-last K,...``: after training, the validation accuracy of the weights averaged over the
ends of the last K epochs (stochastic weight averaging's recipe: batch norm's running statistics
then recomputed on 100 training batches in training mode), for each K.
"""

import argparse

import numpy as np

from fastnet import DeepConvNet, Sequential, load_fashion_mnist, load_mnist, optim
from fastnet.presets import PRESETS
from fastnet.train import split_validation, train

HELD_OUT = 1 / 6  # 10,000 of 60,000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    parser.add_argument("--layers", default=PRESETS["accurate-conv"]["layers"], help="a Sequential (the preset's)")
    parser.add_argument("--net", choices=["deep-conv"], help="the book's DeepConvNet instead of --layers")
    parser.add_argument("--hidden", type=int, default=50, help="DeepConvNet's hidden layer")
    parser.add_argument("--dropout", type=float, default=0.5, help="DeepConvNet's dropout")
    parser.add_argument("--lr-decay", type=float, default=PRESETS["accurate-conv"]["lr_decay"])
    parser.add_argument("--epochs", type=int, default=PRESETS["accurate-conv"]["epochs"])
    parser.add_argument("--shift", type=int, default=0)
    parser.add_argument("--flip", action="store_true")
    parser.add_argument("--rotate", type=float, default=0, help="turn each image by up to this many degrees")
    parser.add_argument("--zoom", type=float, default=0, help="scale each image by 1 ± up to this")
    parser.add_argument("--eval-size", type=int, default=10_000, help="training images scored per epoch")
    parser.add_argument("--average-last", default="", metavar="K,...", help="score the last K epochs' mean weights")
    args = parser.parse_args()
    averages = [int(k) for k in args.average_last.split(",") if k]
    load = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}[args.dataset]
    (x, t), _ = load(flatten=False)  # the test set stays unused
    x_fit, t_fit, x_val, t_val = split_validation(x, t, HELD_OUT, seed=0)
    if args.net == "deep-conv":
        net = DeepConvNet(hidden_size=args.hidden, dropout_ratio=args.dropout, seed=0)
    else:
        net = Sequential.from_spec(f"1x28x28:{args.layers}", seed=0)
    iters = args.epochs * (len(x_fit) // 100)
    ends = []  # the weights at each evaluation: the start, the end of each epoch

    def log(line):
        print(line.replace("test acc", "val acc"), flush=True)
        if averages:
            ends.append({name: value.copy() for name, value in net.params.items()})

    history = train(net, (x_fit, t_fit), (x_val, t_val), iters=iters, batch_size=100, seed=0,
                    optimizer=optim.Adam(1e-3), lr_decay=args.lr_decay, shift=args.shift, flip=args.flip,
                    rotate=args.rotate, zoom=args.zoom,
                    eval_size=args.eval_size,
                    log=log)  # fmt: skip
    print(f"{args.dataset} {vars(args)}: validation accuracy {history.epochs[-1].test_acc:.4f} "
          f"(best {max(e.test_acc for e in history.epochs):.4f}; {history.train_seconds:.0f} s)")  # fmt: skip
    state = {**net.params, **getattr(net, "running", {})}  # the live arrays, batch norm's statistics too
    trained = {name: value.copy() for name, value in state.items()}
    rng = np.random.default_rng(5)
    for k in averages:
        for name, value in trained.items():  # back to the trained weights and statistics, then averaged
            state[name][...] = value
        for name, value in net.params.items():
            value[...] = np.mean([end[name] for end in ends[-k:]], axis=0, dtype=np.float64)
        for _ in range(100):  # the running statistics of the averaged weights
            net.predict(x_fit[rng.integers(0, len(x_fit), 100)], train_flg=True)
        print(f"the last {k} epochs' weights averaged: validation accuracy {net.accuracy(x_val, t_val):.4f}")


if __name__ == "__main__":
    main()
