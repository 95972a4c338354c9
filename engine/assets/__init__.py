"""Bundled assets: ``SAMPLE_MESH`` (a rounded box, 3072 triangles, 6 UV islands; made by
scripts/make_sample_mesh.py)."""

from pathlib import Path

SAMPLE_MESH = Path(__file__).with_name("sample_mesh.obj")
