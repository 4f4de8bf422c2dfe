"""The classic way to build the im2col extension: `cd asgn3 && python setup.py build_ext --inplace`.

`pip install -e .` from the kit's folder does the same (see ../setup.py); this file serves the old guides.
The extension is named asgn3.im2col_cython and the package asgn3 is this folder, so --inplace puts the
compiled module right here, where `from asgn3 import im2col_cython` finds it.
"""

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

extension = Extension(
    "asgn3.im2col_cython",
    sources=["im2col_cython.pyx"],
    include_dirs=[numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=["-O3"],
)

setup(
    name="asgn3-im2col",
    package_dir={"asgn3": "."},
    ext_modules=cythonize([extension], language_level=3),
)
