"""The size of an enlargement: one rounding rule for the engine, the request checks and the face
paste-back (which checks ``round(side * scale)`` itself)."""

from __future__ import annotations


def output_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(width, height) of a ``scale`` x enlargement, each side rounded to the nearest pixel."""
    return round(width * scale), round(height * scale)
