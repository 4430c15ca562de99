"""Loops; importing this package registers them in ``vlp.registry.LOOPS``."""
from .loops import RetrievalTestLoop, RetrievalValLoop  # noqa: F401
