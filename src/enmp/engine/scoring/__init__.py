"""Scoring masks: the evaluator contract, its cache and cost accounting, and the back-ends that run jobs."""
