"""shoal: a storage engine for raw JSON streams."""
