"""One module per CLI subcommand: add_parser(subparsers), run(args) -> int."""
