"""The engine: the Store facade and the policies above the log's bytes and
pages: opening and recovery, query planning, compaction and retention."""
from .store import Store, open

__all__ = ["Store", "open"]
