"""Scoring forecasts: the evaluation loop, metrics, M4 scoring and the baselines beside every score."""
