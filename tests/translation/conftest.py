import pytest

from tr_helpers import memo_config, memo_pairs, write_tsv


@pytest.fixture(scope="session")
def memo_run(tmp_path_factory):
    """A tiny Transformer trained to memorise 32 pairs (plus 2 'grep' pairs as its val split); shared by tests."""
    from lmforge.data.translation import Pair
    from lmforge.train.recipes.translation import run as train
    d = tmp_path_factory.mktemp("memo")
    pairs = memo_pairs()
    val = [Pair("grep", "invalid argument", "ungültiges Argument"), Pair("grep", "memory exhausted", "Speicher erschöpft")]
    tsv = write_tsv(d / "memo.tsv", [*[Pair("memo", p.src, p.tgt) for p in pairs], *val])
    summary = train(memo_config(tsv), d / "run", log=lambda m: None)
    return d / "run", pairs, summary, tsv
