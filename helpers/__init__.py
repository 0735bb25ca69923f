"""Helpers of the image-classification study kit: one module per stage of the study."""

__version__ = "0.1.0"
