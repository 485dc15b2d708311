"""Training of nicodec's models (needs the ``train`` extra: torch)."""
