"""dockerarchive transport."""
