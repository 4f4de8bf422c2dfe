"""The classic way to build the im2col extension: `cd asgn3 && python setup.py build_ext --inplace`.

The extension is defined here once: `pip install -e .` from the kit's folder builds the same one through
../setup.py, which imports im2col_extension from this file. The extension is named asgn3.im2col_cython and
the package asgn3 is this folder, so --inplace puts the compiled module right here, where
`from asgn3 import im2col_cython` finds it.
"""

import numpy
from setuptools import Extension


def im2col_extension(source="im2col_cython.pyx"):
    """The Cython im2col extension, compiled from `source` (a path relative to where setup runs)."""
    return Extension(
        "asgn3.im2col_cython",
        sources=[source],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )


if __name__ == "__main__":
    from Cython.Build import cythonize
    from setuptools import setup

    setup(
        name="asgn3-im2col",
        package_dir={"asgn3": "."},
        ext_modules=cythonize([im2col_extension()], language_level=3),
    )
