"""confnet: train Caffe-format networks in Python."""

__version__ = "0.1.0"
