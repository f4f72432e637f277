"""skgenerative: scikit-learn compatible generative density estimators on PyTorch."""

from .mixture import GaussianMixtureDensity
from .ppca import PPCADensity
from .rbm import BernoulliRBM

__all__ = ["GaussianMixtureDensity", "PPCADensity", "BernoulliRBM"]
__version__ = "0.1.0"
