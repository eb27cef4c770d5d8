"""Helpers of the sweep tests: the shipped spaces, and space files written for one test."""

from __future__ import annotations

from pathlib import Path

SPACES = Path(__file__).resolve().parents[2] / "tune_spaces"
"""The shipped search spaces."""


def write_space(directory: Path, text: str) -> Path:
    """``text`` as ``<directory>/space.yaml``."""
    path = directory / "space.yaml"
    path.write_text(text)
    return path
