"""Headless Chromium for the tests that look at pictures: renders an HTML or SVG file to
a PNG screenshot, and tells whether a screenshot shows anything.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it); tests that need it
use ``requires_chromium``, which skips them, saying so, where it is missing. The PNG is
decoded here with zlib and struct, so the check needs no imaging library.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
requires_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (Debian: apt-get install chromium; "
           ".ci/run installs it)")

# A cold start of Chromium takes a second or two; a loaded CI machine, much more.
_TIMEOUT = 120.0


def write_page(path: str | Path, body: str, *, title: str = "counterpoint") -> Path:
    """Writes an HTML fragment (a ``_repr_html_``, an inline SVG) as a UTF-8 page on
    a white background, as a notebook shows it."""
    path = Path(path)
    path.write_text(
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title></head>'
        f'<body style="margin:12px;background:#fff;color:#000">{body}</body></html>',
        encoding="utf-8")
    return path


def screenshot(page: str | Path, png: str | Path, width: int, height: int) -> Path:
    """Renders the HTML or SVG file ``page`` in a ``width`` x ``height`` window of
    headless Chromium and writes the screenshot to ``png``.

    The page is rendered offline (every host name fails to resolve), in a fresh
    profile. Raises RuntimeError with Chromium's output if no screenshot was written.
    """
    assert CHROMIUM is not None, "screenshot() needs Chromium: mark the test requires_chromium"
    page, png = Path(page).resolve(), Path(png).resolve()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="cp-chromium-") as profile:
        command = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-extensions", "--mute-audio",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--screenshot={png}", f"--window-size={width},{height}", page.as_uri(),
        ]
        # Its own session, so that a hung Chromium is killed with every process it started.
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            output, _ = process.communicate(timeout=_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            raise RuntimeError(f"Chromium did not render {page} within {_TIMEOUT:g} s:\n"
                               f"{output.decode(errors='replace')[-2000:]}") from None
    if not png.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot of {page} (exit status "
                           f"{process.returncode}):\n{output.decode(errors='replace')[-2000:]}")
    return png


def is_blank(png: str | Path, *, tolerance: int = 16, min_pixels: int = 100) -> bool:
    """Whether the screenshot is (nearly) one colour: fewer than ``min_pixels`` pixels
    differ from the most common colour by more than ``tolerance`` in some channel."""
    width, _, channels, rows = read_png(png)
    colours = Counter(bytes(row[k:k + channels]) for row in rows
                      for k in range(0, width * channels, channels))
    background = colours.most_common(1)[0][0]
    differing = sum(count for colour, count in colours.items()
                    if any(abs(a - b) > tolerance for a, b in zip(colour, background)))
    return differing < min_pixels


# PNG colour types with 8 bits per sample: grey, RGB, grey + alpha, RGBA.
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def read_png(png: str | Path) -> tuple[int, int, int, list[bytearray]]:
    """``(width, height, channels, rows)`` of an 8-bit, non-interlaced PNG (what Chromium
    writes); rows hold ``width * channels`` samples each."""
    data = Path(png).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{png} is not a PNG file")
    offset, idat, header = 8, bytearray(), b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind = data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in _CHANNELS or interlace:
        raise ValueError(f"{png}: only 8-bit non-interlaced grey/RGB(A) PNGs are read, got "
                         f"depth {depth}, colour type {colour}, interlace {interlace}")
    channels = _CHANNELS[colour]
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        row = bytearray(raw[start + 1:start + 1 + stride])
        _unfilter(raw[start], row, previous, channels)
        rows.append(row)
        previous = row
    return width, height, channels, rows


def _unfilter(kind: int, row: bytearray, above: bytearray, bpp: int) -> None:
    """Undoes a row's PNG filter in place (filter types 0-4 of the PNG specification)."""
    if kind == 0:
        return
    if kind == 1:
        for i in range(bpp, len(row)):
            row[i] = (row[i] + row[i - bpp]) & 0xFF
    elif kind == 2:
        for i in range(len(row)):
            row[i] = (row[i] + above[i]) & 0xFF
    elif kind == 3:
        for i in range(len(row)):
            left = row[i - bpp] if i >= bpp else 0
            row[i] = (row[i] + ((left + above[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(len(row)):
            a = row[i - bpp] if i >= bpp else 0
            b = above[i]
            c = above[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            row[i] = (row[i] + predictor) & 0xFF
    else:
        raise ValueError(f"unknown PNG filter type {kind}")
