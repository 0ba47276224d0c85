"""Generators for the committed completion scripts and man pages (run dev/gen-docs)."""
