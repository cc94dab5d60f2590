"""Research state on the keyed MemoryStore: records, edits, views, the store and the pure verdicts."""
