"""The worked examples in the tokenizer docstrings are checked, not just shown."""
import doctest
import importlib

import pytest

MODULES = ["base", "char", "bpe", "pipeline", "merges", "wordpiece", "unigram", "io", "special", "stream", "sentencepiece", "__init__"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module("lmforge.tokenizers" if name == "__init__" else f"lmforge.tokenizers.{name}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_no_torch_import():
    import subprocess
    import sys
    code = "import sys, lmforge.tokenizers; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
