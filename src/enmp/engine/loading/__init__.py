"""Loading a run: the validated base and adapters, the live model and heads, the prepared data."""
