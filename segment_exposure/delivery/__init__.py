"""Exposures from Segment to Amplitude: translation, the destination and the Amplitude HTTP client."""
