"""tfwd: decoupled weight decay, K-FAC and curvature noise for Keras 3."""

__version__ = "0.1.0"
