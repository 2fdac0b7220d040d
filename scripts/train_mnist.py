"""The book's ch. 5 training script (train_neuralnet.py), written with fastnet.

    python scripts/train_mnist.py

Same settings and the same printed lines as the book; the network is fastnet's
TwoLayerNet (float32, Numba kernels) and the data comes from fastnet.load_mnist.
"""

import time

import numpy as np

from fastnet import TwoLayerNet, load_mnist

(x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, one_hot_label=True)

network = TwoLayerNet(input_size=784, hidden_size=50, output_size=10)

iters_num = 10000
train_size = x_train.shape[0]
batch_size = 100
learning_rate = 0.1

train_loss_list = []
train_acc_list = []
test_acc_list = []

iter_per_epoch = max(train_size / batch_size, 1)

start = time.perf_counter()
for i in range(iters_num):
    batch_mask = np.random.choice(train_size, batch_size)
    x_batch = x_train[batch_mask]
    t_batch = t_train[batch_mask]

    # The book computes grad = network.gradient(...) and subtracts lr * grad from
    # each parameter; step() does both in one compiled call.
    loss = network.step(x_batch, t_batch, learning_rate)
    train_loss_list.append(loss)

    if i % iter_per_epoch == 0:
        train_acc = network.accuracy(x_train, t_train)
        test_acc = network.accuracy(x_test, t_test)
        train_acc_list.append(train_acc)
        test_acc_list.append(test_acc)
        print(train_acc, test_acc)

print(f"{iters_num} iterations in {time.perf_counter() - start:.2f} s")
