"""Importing this package registers datasets, collate functions and tokenizers."""
