"""Importing this package registers hooks, strategies and optimizer constructors."""
