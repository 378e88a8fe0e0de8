"""Configs shipped inside the package, so installed commands never depend on the working directory.

The files in the repository's top-level `configs/` name these on the command line.
"""
