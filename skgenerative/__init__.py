"""skgenerative: scikit-learn compatible generative density estimators on PyTorch."""

from ._schema import IdentifierColumnWarning
from .base import DiscreteDataWarning
from .flow_vae import FlowVAE
from .impute import GenerativeImputer
from .mixture import GaussianMixtureDensity
from .outlier import GenerativeOutlierDetector
from .ppca import PPCADensity
from .rbm import BernoulliRBM
from .vae import VariationalAutoencoder

__all__ = [
    "BernoulliRBM",
    "DiscreteDataWarning",
    "FlowVAE",
    "GaussianMixtureDensity",
    "GenerativeImputer",
    "GenerativeOutlierDetector",
    "IdentifierColumnWarning",
    "PPCADensity",
    "VariationalAutoencoder",
]
__version__ = "0.1.0"
