"""Suite-wide test hygiene."""
import pytest
import torch.nn.functional as F


@pytest.fixture(autouse=True)
def _restore_functional_linear():
    """DeepSpeed's ZeRO-3 ``zero.Init`` swaps ``torch.nn.functional.linear`` for its own
    autograd function process-wide and does not always put it back; later tests in the
    same process (e.g. TorchScript of open_clip models) would see it. Restore it."""
    linear = F.linear
    yield
    F.linear = linear
