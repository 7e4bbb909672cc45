"""Command line. Nothing imports this package; it only calls the public API."""
