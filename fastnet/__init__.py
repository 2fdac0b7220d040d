"""fastnet: the two-layer network of Deep Learning from Scratch ch. 5 as fused Numba kernels.

    from fastnet import TwoLayerNet, kernels, reference, load_mnist
"""
from . import gradcheck, kernels, reference
from .net import TwoLayerNet

__all__ = ["TwoLayerNet", "kernels", "reference", "gradcheck"]
__version__ = "0.1.0"
