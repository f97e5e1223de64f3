"""``medpeft serve``: the HTTP API and web page over finished runs (one backbone in memory)."""
from __future__ import annotations

import argparse

from . import common


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serialization import from_dict, load_yaml, merge
    from ..serve.config import ServeConfig
    from ..serve.server import api_key_from, serve
    from .flags import given_values

    values = merge(load_yaml(args.config) if args.config else {}, given_values(args).get("serve", {}))
    config = from_dict(ServeConfig, values, where="serve")
    serve(args.runs, config, api_key=api_key_from(args.api_key_file), console=common.console)
    return 0


def add_commands(commands) -> None:
    from ..serve.config import ServeConfig
    from .flags import HelpFormatter, add_dataclass_flags

    serve = commands.add_parser("serve", help="HTTP API and web page: one backbone in memory, each run's "
                                              "adapter chosen per request", formatter_class=HelpFormatter)
    serve.add_argument("runs", nargs="+", metavar="[NAME=]RUN",
                       help="run directories, named by their folder or NAME= (the name requests use)")
    serve.add_argument("--config", help="YAML file of the options below; flags override it")
    serve.add_argument("--api-key-file", help="file whose first line is the API key every request must send "
                                              "(default: $MEDPEFT_API_KEY; neither: no key)")
    add_dataclass_flags(serve, ServeConfig, "serve")
    serve.set_defaults(func=cmd_serve)
