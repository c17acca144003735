"""`enmp search --config RECIPE --dry-run`: validate a run config offline on a tiny random model.

Nothing is downloaded. The base's architecture comes from `enmp.architectures` (or a local base
directory's config.json) and is rebuilt tiny with random weights (`stand_in`, built with `enmp.tiny`); real
head files are checked against it (`heads`); then the real engine scores experts, the full merge and a first
candidate on it (`orchestrator`). What stays unchecked offline (and is said so): hub ids, gated access, the
real datasets' columns and split names, and the real weights.
"""

from .orchestrator import dry_run

__all__ = ["dry_run"]
