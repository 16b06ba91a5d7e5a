"""Forecasting new data with a trained run: the Forecaster API and forecast.py's work."""
