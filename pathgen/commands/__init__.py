"""Subcommands of `pathgen`: each module has `register(subparsers)` and a `run(args)` it binds."""
