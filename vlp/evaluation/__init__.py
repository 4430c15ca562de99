"""Importing this package registers the metrics."""
