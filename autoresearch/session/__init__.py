"""One research session of a key: open, research, audit, close; the CLI and the store subcommands."""
