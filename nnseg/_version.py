"""The single place where nnseg's version is defined."""

__version__ = "0.1.0"
