"""The one part of the build pyproject.toml cannot declare without warnings: the C extension.

``publisher._landing`` holds the landing zone's C loops. It is optional:
``publisher/intake/landing.py`` has them in Python too, so a machine without a C
compiler still installs (a little slower) instead of failing.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "publisher._landing",
            sources=["publisher/_landing.c"],
            libraries=["rt"],
            optional=True,
        )
    ]
)
