"""Event replay: re-publish a window of a topic's or a stream's history to any target."""
