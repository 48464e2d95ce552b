"""Numba kernels for gptoss (installed as `gptoss_kernels`).

Kernels take NumPy arrays and scalars only: no I/O, no model objects, no CLI.
"""
