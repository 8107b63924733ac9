"""What the network's curvature is: layer capture, Kronecker factors, diagonal Fisher, inverses.

Independent of any optimizer (STYLE rule 2)::

    factors = tfwd.curvature.kronecker_factors(model, x, y, curvature="fisher")  # {layer: (A, G)}
    A_inv, G_inv = tfwd.curvature.damped_inverses(A, G, damping=1e-3)
    direction = tfwd.curvature.precondition(gradient_matrix, A_inv, G_inv)
"""
from tfwd.curvature.blocks import KroneckerBlock
from tfwd.curvature.capture import LayerCapture, UnsupportedLayerError, split_layers
from tfwd.curvature.diagonal import diagonal_fisher
from tfwd.curvature.inverse import damped_inverses, kl_clip_scale, pi_split, precondition
from tfwd.curvature.statistics import CURVATURES, kronecker_factors, layer_statistics

__all__ = [
    "CURVATURES", "KroneckerBlock", "LayerCapture", "UnsupportedLayerError", "damped_inverses",
    "diagonal_fisher", "kl_clip_scale", "kronecker_factors", "layer_statistics", "pi_split",
    "precondition", "split_layers",
]
