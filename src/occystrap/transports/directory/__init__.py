"""directory transport."""
