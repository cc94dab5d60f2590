"""The report tabs and key summaries: pure functions of a snapshot or of the records."""
