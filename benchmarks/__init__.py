"""Performance benchmarks with recorded results (see README.md); scripts, not part of the package."""
