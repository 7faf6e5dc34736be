"""Hipper: a self-hostable business telephone exchange and its Hipper+ app."""

__version__ = "0.1.0"
