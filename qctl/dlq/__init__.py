"""Dead-letter queues: provenance parsing, inspection, drain and the no-loss redrive."""
