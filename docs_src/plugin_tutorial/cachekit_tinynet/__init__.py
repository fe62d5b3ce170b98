"""cachekit regions for TinyNet, a small convolutional denoiser."""

from cachekit_tinynet.model import ResBlock, TinyNet, tinynet

__all__ = ["ResBlock", "TinyNet", "tinynet"]
