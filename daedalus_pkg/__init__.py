"""Daedalus: an autonomous design agent for compute kernels and neural-network architectures."""

__version__ = "0.1.0"
