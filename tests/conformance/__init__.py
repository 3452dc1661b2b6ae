"""Cross-transport conformance: the round-trip matrix, memory bounds and the command line."""
