"""A picture made offline: SVG text that notebooks show and that saves as .svg or .html."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ._svg import escape

_FORMATS = (".svg", ".html", ".htm")


@dataclass(frozen=True)
class GraphPicture:
    """A picture of a compiled graph (``app.draw()``): standalone SVG, made in pure
    Python (no graphviz, no network).

    In Jupyter it shows as itself, scaled to the output's width. It pickles, and two
    pictures are equal when their SVG is.

    Attributes:
        svg: The SVG document (UTF-8 text, no XML declaration).
        width: Its natural width in pixels.
        height: Its natural height in pixels.
        title: What an HTML page of it is titled.
    """

    svg: str
    width: float
    height: float
    title: str = "counterpoint graph"

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the picture to ``path``: SVG for a ``.svg`` file, a standalone web
        page showing it for ``.html`` (or ``.htm``).

        Returns:
            The path written.

        Raises:
            ValueError: the file name ends in anything else.
        """
        target = Path(path)
        suffix = target.suffix.lower()
        if suffix not in _FORMATS:
            raise ValueError(
                f"cannot save a picture as {target.name!r}: name the file *.svg (the "
                "picture) or *.html (a web page showing it)")
        text = self.svg if suffix == ".svg" else self._page()
        target.write_text(text, encoding="utf-8")
        return target

    def _page(self) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>{escape(self.title)}</title>\n</head>\n"
                "<body style=\"margin:16px;background:#ffffff\">\n"
                f"{self.svg}\n</body>\n</html>\n")

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_html_(self) -> str:
        # Scrolls rather than overflowing the output area when shown at natural size.
        return f'<div style="max-width:100%;overflow:auto">{self.svg}</div>'

    def __repr__(self) -> str:
        return f"GraphPicture({self.width:.0f}x{self.height:.0f} px, {len(self.svg)} chars of SVG)"
