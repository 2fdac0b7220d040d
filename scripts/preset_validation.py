"""Score DeepConvNet settings on a validation split of the training set (the accurate-conv
preset's choice): 10,000 of the 60,000 training images held out (seed 0), the rest trained on
for --epochs epochs with Adam 1e-3 and batch 100; prints the validation accuracy after the run.

    python scripts/preset_validation.py --dataset fashion-mnist                 # the shipped settings
    python scripts/preset_validation.py --dataset fashion-mnist --hidden 256 --dropout 0.5
    python scripts/preset_validation.py --dataset fashion-mnist --shift 2 --flip
"""

import argparse

from fastnet import DeepConvNet, load_fashion_mnist, load_mnist, optim
from fastnet.train import train

HELD_OUT = 1 / 6  # 10,000 of 60,000


def validation_only(line):
    """The loop's per-epoch line without the test accuracy: choices are made on validation alone."""
    print(line[line.index("val acc") :] if "val acc" in line else line, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    parser.add_argument("--hidden", type=int, default=50)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--lr-decay", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--shift", type=int, default=0)
    parser.add_argument("--flip", action="store_true")
    args = parser.parse_args()
    load = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}[args.dataset]
    train_data, test_data = load(flatten=False)
    net = DeepConvNet(hidden_size=args.hidden, dropout_ratio=args.dropout, seed=0)
    per_epoch = round(len(train_data[0]) * (1 - HELD_OUT)) // 100
    history = train(net, train_data, test_data, iters=args.epochs * per_epoch, batch_size=100, seed=0,
                    optimizer=optim.Adam(1e-3), validation=HELD_OUT, lr_decay=args.lr_decay, shift=args.shift,
                    flip=args.flip, log=validation_only)  # fmt: skip
    print(f"{args.dataset} {vars(args)}: validation accuracy {history.epochs[-1].val_acc:.4f} "
          f"({history.train_seconds:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
