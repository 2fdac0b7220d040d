"""fastnet: the networks of Deep Learning from Scratch (ch. 5-8) as fused Numba kernels.

from fastnet import TwoLayerNet, MultiLayerNet, SimpleConvNet, NetStack, optim, kernels, reference, load_mnist
from fastnet import Sequential, layers     # networks of your own design from the book's layers
"""

from . import gradcheck, kernels, layers, optim, reference
from ._cores import SharedCoresWarning, exclusive_cores
from .convnet import DeepConvNet, SimpleConvNet
from .datasets import load_csv, load_fashion_mnist, load_idx_dir, load_mnist
from .multilayer import MultiLayerNet
from .net import TwoLayerNet
from .sequential import Sequential
from .stack import NetStack
from .weights import load_weights, save_weights

__all__ = [
    "TwoLayerNet",
    "MultiLayerNet",
    "SimpleConvNet",
    "DeepConvNet",
    "Sequential",
    "layers",
    "NetStack",
    "optim",
    "kernels",
    "reference",
    "gradcheck",
    "load_mnist",
    "load_fashion_mnist",
    "load_csv",
    "load_idx_dir",
    "load_weights",
    "save_weights",
    "exclusive_cores",
    "SharedCoresWarning",
]
__version__ = "0.1.0"
