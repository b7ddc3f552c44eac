"""labelmill: distributed batch inference and pseudo-labeling (pure core, never imports ray)."""

__version__ = "0.1.0"
