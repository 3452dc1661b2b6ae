"""The command line: click commands that parse options at the edge and call the library."""
