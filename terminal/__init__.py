"""care-terminal: kernel, infrastructure and the composition root."""

__version__ = "0.1.0"
