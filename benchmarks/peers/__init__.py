"""The side-by-side benchmark against OpenEvolve (run.py)."""
