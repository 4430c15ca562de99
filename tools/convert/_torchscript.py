"""Moved to :mod:`vlp.convert.torchscript` (TorchScript weights read without running the
archive); kept so that ``from _torchscript import read_torchscript_state_dict`` works."""
from vlp.convert.torchscript import (read_torchscript_state_dict,  # noqa: F401
                                     torchscript_root)
