"""The ``labelmill`` command line.

    labelmill label CONFIG [--set key=value ...]     run the teacher labeling job
    labelmill aggregate CONFIG [--set ...]           teacher votes -> one soft label set per doc
    labelmill distill CONFIG [--set ...]             train and export the student (Ray Train)
    labelmill evaluate CONFIG [--set ...]            score teachers, aggregate, student vs gold
    labelmill predict CONFIG [--set ...]             run the student over the corpus (batch)
    labelmill run CONFIG [--set ...]                 the whole loop, campaign rounds included
    labelmill campaign CONFIG [--dry-run] [--set ...]  budgeted relabeling rounds
    labelmill serve ARTIFACT_DIR [--config F] [--set ...] [--host H] [--port P]
                                                     the HTTP endpoint (Ray Serve)
    labelmill models prepare NAME [--force]          build a bundled model locally (no network)
    labelmill models list                            the models `prepare` knows
    labelmill status OUTPUT_URI [--json]             what a run directory holds (no Ray)

Each job command loads its YAML config once, applies ``--set`` overrides, validates, and passes
sub-configs down. Each stage's job returns a summary whose ``render()`` is printed on the
console (:mod:`labelmill.console`): one line per stage start, a progress bar per long stage,
the summary. Ray's, vLLM's and transformers' own output goes to ``<output_uri>/logs/``
(:mod:`labelmill.logcapture`); ``--verbose`` shows it too, ``--quiet`` shows only summaries
and errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence

from labelmill.config import LabelmillConfig, load_config
from labelmill.console import Console, format_label_summary, use_console
from labelmill.errors import ConfigError, LabelmillError
from labelmill.logcapture import capture_output
from labelmill.pipelines.runtime import as_job_error

_JOBS = {
    "label": "run the teacher labeling job",
    "aggregate": "aggregate teacher votes into one soft label set per document",
    "distill": "train the student on the aggregate labels (Ray Train) and export it",
    "evaluate": "score every teacher, the aggregate and the student against gold",
    "predict": "run the exported student over the corpus as a batch job",
    "run": "the whole loop: label -> aggregate -> distill -> evaluate -> campaign rounds",
    "campaign": "relabel the documents where it helps most, within the hard budget",
}


def _run_job(
    command: str, config: LabelmillConfig, console: Console, dry_run: bool = False
) -> None:
    """Run one job stage (imported lazily: the Ray pipelines load only when asked for)."""
    show = console.summary
    if command == "label":
        from labelmill.pipelines.label import run_label_job

        console.stage("label", f"{len(config.teachers)} teacher(s) over {config.corpus.uri}")
        show(format_label_summary(run_label_job(config)))
    elif command == "aggregate":
        from labelmill.pipelines.aggregate import run_aggregate_job

        console.stage("aggregate", config.aggregate.method)
        show(run_aggregate_job(config).render())
    elif command == "distill":
        from labelmill.pipelines.distill import run_distill_job
        from labelmill.pipelines.run import distill_with_progress

        console.stage("distill", f"student {config.student.backbone} on Ray Train")
        show(distill_with_progress(config, run_distill_job).render())
    elif command == "evaluate":
        from labelmill.pipelines.evaluate import run_evaluate_job
        from labelmill.pipelines.run import finish_report

        console.stage("evaluate", "teachers, aggregate and student on held-out gold")
        summary = run_evaluate_job(config)
        finish_report(config, None)  # the lineage table gets the vote files' figures
        show(summary.render())
    elif command == "predict":
        from labelmill.pipelines.predict import run_predict_job

        console.stage("predict", f"the student over {config.corpus.uri}")
        show(run_predict_job(config).render())
    elif command == "run":
        from labelmill.pipelines.run import run_whole

        show(run_whole(config).render())
    elif command == "campaign":
        from labelmill.pipelines.campaign import run_campaign

        console.stage("campaign", "dry run: the plan and its cost" if dry_run else "")
        show(run_campaign(config, dry=dry_run).render())
    else:  # argparse only lets known commands through
        raise ConfigError(f"unknown command {command!r}")


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="path of the job's YAML config")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted path, e.g. --set corpus.limit=50 "
        "--set teachers.0.mode=score (repeatable)",
    )
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show Ray's, vLLM's and transformers' logs (always in <output_uri>/logs/)",
    )
    loudness.add_argument(
        "-q", "--quiet", action="store_true", help="show only the summaries and errors"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="labelmill", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    for name, text in _JOBS.items():
        job = commands.add_parser(name, help=text)
        _add_config_args(job)
        if name == "campaign":
            job.add_argument(
                "--dry-run", action="store_true", help="print the estimated cost; send nothing"
            )

    serve = commands.add_parser("serve", help="serve an exported student over HTTP (Ray Serve)")
    serve.add_argument("artifact_dir", help="exported student directory (labelmill distill)")
    serve.add_argument(
        "--config", default=None, help="serve args YAML, or a Serve config file (first app)"
    )
    serve.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a serve arg, e.g. --set batching.max_batch_size=64 (repeatable)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    serve.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    serve.add_argument(
        "--address", default=None, help="Ray address to join (default: embedded local Ray)"
    )

    models = commands.add_parser("models", help="prepare bundled models")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    prepare = model_commands.add_parser("prepare", help="build a bundled model locally")
    prepare.add_argument("name", help="model name (see `labelmill models list`)")
    prepare.add_argument("--force", action="store_true", help="rebuild even if present")
    model_commands.add_parser("list", help="list the models `prepare` knows")

    status = commands.add_parser("status", help="what a run directory holds (reads files only)")
    status.add_argument("output_uri", help="the run directory (a config's output_uri)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    return parser


def _job(args: argparse.Namespace) -> int:
    """A job command: load the config, then run it with the engines' output sent to the run
    directory's log file and the console on the original stdout."""
    config = load_config(args.config, args.overrides)
    verbosity = "verbose" if args.verbose else ("quiet" if args.quiet else "normal")
    log_uri = None
    try:
        with capture_output(config.output_uri, args.command, tee=args.verbose) as captured:
            log_uri = captured.log_uri
            console = Console(captured.stdout, verbosity, error_stream=captured.stderr)
            with use_console(console):
                _run_job(args.command, config, console, dry_run=getattr(args, "dry_run", False))
    except Exception as error:
        if log_uri is not None:
            print(f"labelmill: engine logs: {log_uri}", file=sys.stderr)
        raise as_job_error(error, args.command) from error
    print(f"logs: {log_uri}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from labelmill.status import render_status, run_status

    status = run_status(args.output_uri)
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labelmill`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "models":
            from labelmill.models import known_models, prepare_model

            if args.models_command == "list":
                for name in known_models():
                    print(name)
                return 0
            print(prepare_model(args.name, force=args.force))
            return 0
        if args.command == "serve":
            from labelmill.serve.local import serve_forever
            from labelmill.serve_config import load_serve_config

            serve_config = load_serve_config(args.config, args.artifact_dir, args.overrides)
            serve_forever(serve_config, args.host, args.port, args.address)
            return 0
        if args.command == "status":
            return _status(args)
        return _job(args)
    except LabelmillError as error:  # config / input (exit 2) or job (exit 1): say it, no trace
        print(f"labelmill: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as error:  # not raised on purpose: a bug, so the traceback is the report
        traceback.print_exc()
        print(f"labelmill: internal error ({type(error).__name__}): {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
