"""distributed_clr: contrastive representations of LHC collision events at cluster scale."""

import logging

__version__ = "0.1.0"

# A library never configures logging for its users; the CLI does (see cli.py).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
