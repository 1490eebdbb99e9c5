"""Draws images/icon.png, the extension's 128x128 icon: code lines, a cursor and ghost text.

Standard library only (zlib + struct), drawn at 4x and averaged down for smooth edges:
    python3 editors/vscode/images/make-icon.py
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SIZE, SCALE = 128, 4
BACKGROUND = (30, 41, 59, 255)  # slate
CODE = (226, 232, 240, 255)  # the text typed
CURSOR = (56, 189, 248, 255)  # sky blue
GHOST = (148, 163, 184, 150)  # the ghost text: translucent grey

#: (x0, y0, x1, y1, colour) in the 128-pixel grid: three lines of code, then the line being
#: typed with the cursor and its ghost completion, and one more ghost line below
SHAPES = [
    (22, 26, 70, 36, CODE),
    (34, 44, 96, 54, CODE),
    (34, 62, 80, 72, CODE),
    (34, 80, 54, 90, CODE),
    (57, 76, 61, 94, CURSOR),
    (64, 80, 106, 90, GHOST),
    (34, 98, 88, 108, GHOST),
]


def inside_rounded(x: float, y: float, x0: float, y0: float, x1: float, y1: float, radius: float) -> bool:
    """Whether (x, y) is inside the rectangle (x0, y0)-(x1, y1) with corners of this radius."""
    if not (x0 <= x < x1 and y0 <= y < y1):
        return False
    cx = min(max(x, x0 + radius), x1 - radius)
    cy = min(max(y, y0 + radius), y1 - radius)
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius**2


def pixel(x: float, y: float) -> tuple[int, int, int, int]:
    """The colour at (x, y) of the 128-pixel grid."""
    if not inside_rounded(x, y, 0, 0, SIZE, SIZE, 22):
        return (0, 0, 0, 0)
    r, g, b, a = BACKGROUND
    for x0, y0, x1, y1, (sr, sg, sb, sa) in SHAPES:
        if inside_rounded(x, y, x0, y0, x1, y1, min(x1 - x0, y1 - y0) / 2):
            t = sa / 255
            r, g, b = round(sr * t + r * (1 - t)), round(sg * t + g * (1 - t)), round(sb * t + b * (1 - t))
    return (r, g, b, a)


def render() -> bytes:
    rows = []
    n = SCALE * SCALE
    for py in range(SIZE):
        row = bytearray([0])  # PNG filter: none
        for px in range(SIZE):
            acc = [0, 0, 0, 0]
            for sy in range(SCALE):
                for sx in range(SCALE):
                    c = pixel(px + (sx + 0.5) / SCALE, py + (sy + 0.5) / SCALE)
                    for i in range(3):
                        acc[i] += c[i] * c[3]  # premultiplied, so that transparent corners blend
                    acc[3] += c[3]
            alpha = acc[3] / n
            rgb = [round(acc[i] / acc[3]) if acc[3] else 0 for i in range(3)]
            row += bytes([*rgb, round(alpha)])
        rows.append(bytes(row))
    return b"".join(rows)


def png(width: int, height: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    out = Path(__file__).with_name("icon.png")
    out.write_bytes(png(SIZE, SIZE, render()))
    print(out)
