"""skgenerative: scikit-learn compatible generative density estimators on PyTorch."""

from .mixture import GaussianMixtureDensity
from .outlier import GenerativeOutlierDetector
from .ppca import PPCADensity

__all__ = ["GaussianMixtureDensity", "GenerativeOutlierDetector", "PPCADensity"]
__version__ = "0.1.0"
