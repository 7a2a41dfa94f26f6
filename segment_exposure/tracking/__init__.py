"""Exposures into Segment: the provider, its worker, dedupe, message ids, counters, the Segment client."""
