import os

# Tests use tiny models: one thread is as fast as two there, and on a shared 2-core machine several
# threads per process oversubscribe the cores (measured: the translation tests went from ~60 s to ~620 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run checks marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def transformers():
    """Hugging Face transformers, for the tests that compare against it; those tests (only) skip without it."""
    return pytest.importorskip("transformers")
