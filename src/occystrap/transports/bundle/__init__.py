"""bundle transport."""
