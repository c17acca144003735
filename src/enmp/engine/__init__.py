"""Engine: applies merges to a live model (patching, caching), runs searches and writes outputs."""
