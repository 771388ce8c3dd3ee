"""Plots with token labels draw Chinese with a real font when the machine has one (scripts/setup.sh installs it)."""
import warnings

import pytest

from lmforge.plots import CJK_FONTS, token_fonts


def test_font_list_starts_with_dejavu_and_adds_only_installed_cjk_fonts():
    from matplotlib import font_manager
    fonts = token_fonts()["font.family"]
    installed = {f.name for f in font_manager.fontManager.ttflist}
    assert fonts[0] == "DejaVu Sans" and all(f in installed and f in CJK_FONTS for f in fonts[1:])


def test_chinese_labels_have_glyphs(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if len(token_fonts()["font.family"]) == 1:
        pytest.skip("no CJK font installed (Debian: apt-get install fonts-wqy-microhei; scripts/setup.sh does)")
    with warnings.catch_warnings(), matplotlib.rc_context(token_fonts()):
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" for each empty box
        fig, ax = plt.subplots()
        ax.set_xticks([0, 1], ["%s", "是由于"])
        fig.savefig(tmp_path / "zh.png")
        plt.close(fig)
    # and without the fallback the same label has no glyphs: the check above can fail
    with warnings.catch_warnings(record=True) as caught, matplotlib.rc_context({"font.family": "DejaVu Sans"}):
        warnings.simplefilter("always")
        fig, ax = plt.subplots()
        ax.set_xticks([0], ["是由于"])
        fig.savefig(tmp_path / "boxes.png")
        plt.close(fig)
    assert any("missing from font" in str(w.message) for w in caught)
