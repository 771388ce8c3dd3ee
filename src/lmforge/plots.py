"""Matplotlib set-up shared by the plots that show token text (attention maps, per-step bars).

Token labels can be Chinese (the EN-ZH models, a Chinese tokenizer); matplotlib's default font has
no CJK glyphs and draws empty boxes. `token_fonts()` returns a font list with fallbacks: DejaVu Sans
first, then any CJK font installed on the machine (matplotlib >= 3.6 falls back glyph by glyph).
On Debian/Ubuntu, `apt-get install fonts-wqy-microhei` provides one (scripts/setup.sh installs it).
"""
from __future__ import annotations

import functools

CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC",
             "Microsoft YaHei", "SimHei", "PingFang SC", "Heiti SC", "AR PL UMing CN")


@functools.lru_cache(maxsize=1)
def token_fonts() -> dict:
    """rcParams for matplotlib.rc_context: DejaVu Sans plus the installed CJK fallbacks."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return {"font.family": ["DejaVu Sans", *[f for f in CJK_FONTS if f in installed]]}  # a list: per-glyph fallback
