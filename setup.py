"""The compiled kernels (evaluator/compiled/_kernels.c); everything else is in pyproject.toml.

The extension is optional: without a C compiler the build warns and the package installs
without it, and the evaluator runs its pure-Python path (evaluator/compiled/__init__.py says
so once, in the log).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "evaluator.compiled._kernels",
            sources=["evaluator/compiled/_kernels.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra"],
            optional=True,
        )
    ]
)
