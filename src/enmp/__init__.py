"""enmp — merge LoRA experts with Evolutionary Negative Module Pruning (arXiv 2604.17753)."""

__version__ = "0.1.0"
