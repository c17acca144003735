"""One search in one run directory: the journal, rounds, the ask/tell loop, baselines and the report."""
