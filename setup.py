"""Builds the Cython im2col extension for `pip install -e .` (metadata lives in pyproject.toml).

The extension is defined once, in asgn3/setup.py (which also serves the classic
`cd asgn3 && python setup.py build_ext --inplace`); it is loaded here from its file, since the package
itself is not importable while it is being built.
"""

import importlib.util
from pathlib import Path

from Cython.Build import cythonize
from setuptools import setup

spec = importlib.util.spec_from_file_location("asgn3_setup", Path(__file__).parent / "asgn3" / "setup.py")
asgn3_setup = importlib.util.module_from_spec(spec)
spec.loader.exec_module(asgn3_setup)

setup(ext_modules=cythonize([asgn3_setup.im2col_extension("asgn3/im2col_cython.pyx")], language_level=3))
