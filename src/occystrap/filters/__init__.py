"""Filters: tar-entry rewriters and observers placed between a source and a sink."""
