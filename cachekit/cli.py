"""The ``cachekit`` command: inspect plugins, policies, models and config schemas.

Each command imports what it uses when it runs, so ``cachekit --help`` and a mistyped
command answer at once, without importing torch or loading a plugin.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from cachekit.errors import CachekitError, ConfigError

COLUMN_WIDTH = 40
"""Where ``cachekit plugins`` wraps hook names, and the least width a description gets."""

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest line; a cell of several lines makes its row that tall."""
    cells = [[str(cell).split("\n") for cell in row] for row in [headers, *rows]]
    widths = [max(len(line) for row in cells for line in row[column]) for column in range(len(headers))]
    lines = [
        "  ".join(
            (cell[index] if index < len(cell) else "").ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in cells
        for index in range(max(map(len, row)))
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _first_sentence(docstring: str | None) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join((docstring or "").strip().split("\n\n", 1)[0].split())
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", paragraph, maxsplit=1)[0]


def plugins_command(args: argparse.Namespace) -> int:
    """List registered plugins, the hooks each implements, and what it is for."""
    from cachekit.plugin_manager import load_plugins

    pm = load_plugins()
    plugins = [
        (name, sorted(caller.name.removeprefix("cachekit_") for caller in pm.get_hookcallers(plugin) or []), plugin)
        for name, plugin in pm.list_name_plugin()
    ]
    name_width = max(len("plugin"), *(len(name) for name, _, _ in plugins))
    room = max(COLUMN_WIDTH, shutil.get_terminal_size().columns - name_width - COLUMN_WIDTH - 4)
    rows = [
        (name, textwrap.fill(", ".join(hooks), COLUMN_WIDTH), textwrap.fill(_first_sentence(plugin.__doc__), room))
        for name, hooks, plugin in plugins
    ]
    print(_table(("plugin", "hooks", "description"), rows))
    return 0


def policies_command(args: argparse.Namespace) -> int:
    """List policy kinds and their fields."""
    from cachekit.policies.base import policy_kinds

    for kind, cls in sorted(policy_kinds().items()):
        print(f"{kind}: {_first_sentence(cls.__doc__)}")
        rows = [
            (
                name,
                field.annotation.__name__ if hasattr(field.annotation, "__name__") else field.annotation,
                "required" if field.is_required() else field.default,
                field.description or "",
            )
            for name, field in cls.model_fields.items()
            if name != "kind"
        ]
        print("  " + _table(("field", "type", "default", "description"), rows).replace("\n", "\n  "))
        print()
    return 0


def _import_object(spec: str) -> Any:
    """``package.module:name`` -> that object; calls it when it is a function or class."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{spec!r} is not of the form 'package.module:factory'")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"cannot import {module_name!r} from {spec!r}: {error}") from None
    if not hasattr(module, attribute):
        raise ConfigError(f"module {module_name!r} has no attribute {attribute!r}")
    found = getattr(module, attribute)
    return found() if callable(found) and not hasattr(found, "forward") else found


def inspect_command(args: argparse.Namespace) -> int:
    """Show the regions of each denoiser of a model with their share of the forward FLOPs."""
    from cachekit.config import CacheConfig, load_config
    from cachekit.engine.selection import find_denoisers, offered_regions
    from cachekit.flops import region_flop_shares
    from cachekit.plugin_manager import load_plugins

    target = _import_object(args.model)
    config = load_config(args.config) if args.config else CacheConfig()
    pm = load_plugins()
    for denoiser in find_denoisers(pm, target, config):
        model = denoiser.module
        regions = offered_regions(pm, model, config)
        print(f"{denoiser.name}: {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters")
        if not regions:
            print("  no regions: no plugin maps this model; declare regions by module path in a config\n")
            continue
        inputs = _import_object(args.inputs) if args.inputs else pm.hook.cachekit_example_inputs(model=model)
        shares = region_flop_shares(model, regions, *inputs) if inputs else {}
        rows = [
            (
                region.name + (" (default)" if index == 0 else ""),
                region.mode,
                len(region.modules),
                f"{100 * shares[region.name]:.1f}%" if shares else "n/a",
                f"{1 / (1 - shares[region.name]):.2f}x" if shares and shares[region.name] < 1 else "n/a",
                region.description,
            )
            for index, region in enumerate(regions)
        ]
        print(_table(("region", "mode", "modules", "FLOP share", "ceiling", "description"), rows))
        if not inputs:
            print("  (no example inputs for this model: pass --inputs package.module:factory for FLOP shares)")
        print()
    return 0


def schema_command(args: argparse.Namespace) -> int:
    """Print the JSON schema of the cache config."""
    from cachekit.config import config_schema

    print(json.dumps(config_schema(), indent=2))
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run an experiment config (``demo``: the default one); print the table and where files are.

    Says first which settings an earlier run saved (they are skipped). Ctrl-C stops the run
    with one line saying how many settings are saved; running again continues from there.
    ``--executor ray`` runs the settings on a Ray cluster (``--address``, else a local one).
    """
    from cachekit.experiments import DEMO_EXPERIMENT, ExperimentRunner
    from cachekit.experiments.executors import RayExecutor

    if args.address is not None and args.executor != "ray":
        raise ConfigError(f"--address {args.address!r} is the Ray cluster to join: give it with --executor ray")
    executor = RayExecutor(address=args.address) if args.executor == "ray" else None
    config = DEMO_EXPERIMENT if args.config is None else args.config
    runner = ExperimentRunner(config, args.out, fresh=args.fresh, progress=not args.quiet, executor=executor)
    plan = runner.plan
    if plan.done:
        names = ", ".join(repr(name) for name in plan.done)
        print(
            f"skipping {len(plan.done)} of {len(plan.settings)} settings saved in {runner.output_dir} "
            f"by an earlier run: {names} (--fresh runs them again)",
            file=sys.stderr,
        )
    try:
        results = runner.run()
    except KeyboardInterrupt:
        print(
            f"interrupted: {len(runner.rows)} of {len(plan.settings)} settings saved in {runner.output_dir}; "
            "run again to continue",
            file=sys.stderr,
        )
        return INTERRUPTED
    note = results.noise_note()
    print(_table(*results.table()) + "\n\n" + (f"{note}\n" if note else "") + results.where())
    return 0


def calibrate_command(args: argparse.Namespace) -> int:
    """Calibrate a model from an experiment config's ``calibration`` section; print the schedule."""
    from cachekit.experiments.calibrate import calibrate

    print(calibrate(args.config, args.out, plot=not args.no_plot).summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cachekit`` command."""
    parser = argparse.ArgumentParser(prog="cachekit", description="Training-free feature caching for diffusion models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    add("plugins", plugins_command, "list installed plugins and the hooks they implement")
    add("policies", policies_command, "list refresh policy kinds and their fields")
    inspect = add("inspect", inspect_command, "list a model's regions with their share of forward FLOPs")
    inspect.add_argument("model", help="package.module:factory returning a pipeline or nn.Module")
    inspect.add_argument("--config", help="a cache config file (to include declared regions)")
    inspect.add_argument("--inputs", help="package.module:factory returning (args, kwargs) of one forward call")
    add("schema", schema_command, "print the JSON schema of the cache config")
    run = add("run", run_command, "run an experiment config: baseline and each policy, results and plots")
    run.add_argument("config", help="experiment config file (.yaml, .toml or .json)")
    calibrate = add("calibrate", calibrate_command, "choose refresh steps from measured errors (a calibration file)")
    calibrate.add_argument("config", help="experiment config file with a 'calibration' section")
    calibrate.add_argument("--out", help="the JSON file to write (default: calibration.output, else in output_dir)")
    calibrate.add_argument("--no-plot", action="store_true", help="do not draw the heatmap (no matplotlib needed)")
    demo = add("demo", run_command, "run the default experiment on the shipped digits model (offline)")
    demo.set_defaults(config=None)
    run.add_argument("--out", help="output folder (default: the config's output_dir, else runs/<name>)")
    demo.add_argument("--out", default="cachekit-demo", help="output folder (default: %(default)s)")
    for command in (run, demo):
        command.add_argument("--fresh", action="store_true", help="rerun every setting, ignoring earlier results")
        command.add_argument("--quiet", action="store_true", help="no progress bar")
        command.add_argument(
            "--executor",
            choices=("local", "ray"),
            default="local",
            help="where the settings sample: this process (default), or a Ray cluster (the ray extra)",
        )
        command.add_argument("--address", help="with --executor ray: the cluster to join (default: start a local one)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cachekit`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except CachekitError as error:
        print(f"cachekit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cachekit {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
