"""Offline demo: real-text classification tasks from pip packages, LoRA experts on all-MiniLM-L6-v2."""
