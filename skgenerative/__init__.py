"""skgenerative: scikit-learn compatible generative density estimators on PyTorch."""

from .mixture import GaussianMixtureDensity
from .ppca import PPCADensity
from .vae import VariationalAutoencoder

__all__ = ["GaussianMixtureDensity", "PPCADensity", "VariationalAutoencoder"]
__version__ = "0.1.0"
