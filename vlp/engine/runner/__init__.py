"""Loops; importing this package registers them in ``vlp.registry.LOOPS``."""
from .loops import (EpochBasedTrainLoop, IterBasedTrainLoop, RetrievalTestLoop,  # noqa: F401
                    RetrievalValLoop)
