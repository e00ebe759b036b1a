"""The model of this package in its runtime: ``predict`` (runner), ``server`` (HTTP), ``predictor``."""
