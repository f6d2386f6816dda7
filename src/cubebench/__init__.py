"""cubebench."""
