"""Shared test set-up."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests run many small tensor ops: one intra-op thread is fastest on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
