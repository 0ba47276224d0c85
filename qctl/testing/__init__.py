"""Test helpers that third-party plugins can reuse (needs pytest)."""
