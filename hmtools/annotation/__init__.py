"""Pseudo masks (segmenters, trackers, prompts) and the Label Studio correction loop."""
