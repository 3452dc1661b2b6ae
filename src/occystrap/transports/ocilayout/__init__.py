"""ocilayout transport."""
