"""skgenerative: scikit-learn compatible generative density estimators on PyTorch."""

from .mixture import GaussianMixtureDensity
from .ppca import PPCADensity

__all__ = ["GaussianMixtureDensity", "PPCADensity"]
__version__ = "0.1.0"
