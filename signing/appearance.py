"""Visible signature stamps that can show Traditional Chinese names.

The font is Noto Sans CJK TC, installed from PyPI with the package (``cvttf-notosanscjk-regular``);
nothing is fetched at run time. pyHanko subsets and embeds it, so only the glyphs used end up in the PDF.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.stamp import TextStampStyle

from .model import Appearance

__all__ = ["cjk_font_path", "default_stamp_style", "stamp_style"]


@functools.cache
def cjk_font_path() -> Path:
    """Path of the bundled CJK OpenType font."""
    import cvttf_NotoSansCJK_Regular

    return Path(cvttf_NotoSansCJK_Regular.get_TTF_path())


def stamp_style(appearance: Appearance) -> TextStampStyle:
    """A pyHanko stamp style that writes ``appearance.lines`` in the CJK font."""
    text = "\n".join(line.replace("%", "%%") for line in appearance.lines) or " "
    return TextStampStyle(
        stamp_text=text,
        text_box_style=TextBoxStyle(font=GlyphAccumulatorFactory(str(cjk_font_path())), font_size=10),
        border_width=1,
        background=None,
    )


def default_stamp_style() -> TextStampStyle:
    """The stamp used when an existing visible field is signed without an explicit appearance."""
    return TextStampStyle(
        stamp_text="Digitally signed with iAM Smart+\n以「智方便+」數碼簽署\n%(ts)s",
        text_box_style=TextBoxStyle(font=GlyphAccumulatorFactory(str(cjk_font_path())), font_size=10),
        border_width=1,
        background=None,
    )
