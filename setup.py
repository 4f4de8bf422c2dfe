"""Builds the Cython im2col extension for `pip install -e .` (metadata lives in pyproject.toml)."""

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

extension = Extension(
    "asgn3.im2col_cython",
    sources=["asgn3/im2col_cython.pyx"],
    include_dirs=[numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=["-O3"],
)

setup(ext_modules=cythonize([extension], language_level=3))
