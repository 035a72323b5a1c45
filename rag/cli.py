"""`python -m rag`: index, add, remove, docs, ask, chat (a REPL), eval and bench.

Every subcommand accepts --config, --doc and --index-dir after its name. Errors print one line
to stderr and exit non-zero: 1 for a problem with the setup (config, document, index, model),
2 for a question that cannot be asked as given or bad command-line usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import QuestionError, RagError, StoreUnavailableError

if TYPE_CHECKING:
    from rag.config import Config
    from rag.engine import Engine

REPL_COMMANDS = """  /sources  the full quoted passages of the last answer
  /docs     the documents answered from
  /reset    forget the conversation (follow-up questions start afresh)
  /help     this help
  /quit     leave (Ctrl-D works too, and "bye")"""
REPL_HELP = f"Ask a question about the document, or use a command:\n{REPL_COMMANDS}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except BrokenPipeError:  # the reader went away (`rag ask ... | head -1`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except QuestionError as exc:
        print(exc, file=sys.stderr)
        return 2
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


def common_options() -> argparse.ArgumentParser:
    """The options every command takes after its name (and bot.py too): --config, --doc, --index-dir."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="config file (default: ./config.yaml, else the packaged default)")
    common.add_argument(
        "--doc",
        type=Path,
        action="append",
        help="answer from this document instead of the configured ones (repeat for several)",
    )
    common.add_argument("--index-dir", type=Path, help="folder of the persisted index")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="python -m rag", description="Ask questions about a document; answers quote it and cite passages."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    index = commands.add_parser("index", parents=[common], help="build the index (or check it is up to date)")
    index.add_argument("--rebuild", action="store_true", help="rebuild even if the index is up to date")
    index.set_defaults(handler=run_index)

    add = commands.add_parser("add", parents=[common], help="add documents to the index, or update changed ones")
    add.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="a .txt or .md document")
    add.set_defaults(handler=run_add)

    remove = commands.add_parser("remove", parents=[common], help="remove a document added with `add`")
    remove.add_argument("name", metavar="NAME", help="the document's file name or path")
    remove.set_defaults(handler=run_remove)

    docs = commands.add_parser("docs", parents=[common], help="list the indexed documents")
    docs.set_defaults(handler=run_docs)

    ask = commands.add_parser("ask", parents=[common], help="answer one question")
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument("--json", action="store_true", help='print the answer JSON (README, "Formats")')
    ask.set_defaults(handler=run_ask)

    chat = commands.add_parser("chat", parents=[common], help="chat with the document in the terminal")
    chat.set_defaults(handler=run_chat)

    evaluate = commands.add_parser(
        "eval", parents=[common], help="measure answer quality on a JSONL or SQuAD question set"
    )
    dataset = evaluate.add_mutually_exclusive_group(required=True)
    dataset.add_argument("--dataset", type=Path, help="JSONL question set (see eval/)")
    dataset.add_argument(
        "--squad",
        type=Path,
        action="append",
        help="SQuAD-format JSON: each article is a document with its own index (repeat for several files)",
    )
    evaluate.add_argument(
        "--articles",
        help="with --squad: N (the first N articles), 'held-out' (the split's held-out articles, else those"
        " the ranker's training held out) or comma-separated titles",
    )
    evaluate.add_argument(
        "--split",
        type=Path,
        help="with --squad: JSON naming the held-out articles (default: split.json beside the first --squad file)",
    )
    evaluate.add_argument("--predictions", type=Path, help="write one answer JSON per line here")
    evaluate.add_argument("--report", type=Path, help="write the metrics and failures here as JSON")
    evaluate.add_argument(
        "--report-html", type=Path, help="write a quality report with plots here (HTML, images inline)"
    )
    evaluate.add_argument(
        "--compare-predictions",
        type=Path,
        help="with --report-html: another run's --predictions file over the same questions (e.g. the previous"
        " model's), whose abstention trade-off curve is drawn beside this one",
    )
    evaluate.set_defaults(handler=run_eval)

    train = commands.add_parser(
        "train", parents=[common], help="fit the ranker and abstention threshold on SQuAD articles"
    )
    train.add_argument(
        "--squad",
        type=Path,
        action="append",
        required=True,
        help="SQuAD-format JSON (repeat for several files); every article not held out is fitted on",
    )
    train.add_argument(
        "--short-answer-only",
        action="store_true",
        help="fit only the short-answer model, into a copy of the current ranker model (--config's or the packaged)",
    )
    train.add_argument(
        "--split",
        type=Path,
        help="JSON naming the held-out articles of each file (default: split.json beside the first --squad file)",
    )
    train.add_argument(
        "--out",
        type=Path,
        default=Path("ranker.json"),
        help="where to write the model (default: ./ranker.json; use it with answer.ranker_model)",
    )
    train.set_defaults(handler=run_train)

    bench = commands.add_parser("bench", help="benchmark against the llama-index starter pattern")
    bench.add_argument("--quick", action="store_true", help="a tiny run (seconds, not minutes)")
    bench.add_argument(
        "--corpus",
        type=Path,
        help="large corpus: a text file or a folder of .txt files (default: Debian's python3.11-doc sources)",
    )
    bench.add_argument("--no-bot", action="store_true", help="skip the Telegram load test")
    bench.add_argument(
        "--compare-with", type=Path, metavar="DIR", help="also measure the engine of this source checkout, side by side"
    )
    bench.add_argument(
        "--corpus-sizes",
        type=corpus_sizes,
        help="passages of each large-corpus slice, comma-separated (default: 10000,60000)",
    )
    bench.add_argument("--cold-runs", type=int, default=5, help="new processes timed per cold start (the median)")
    bench.add_argument("--no-memory", action="store_true", help="skip the memory breakdown")
    bench.add_argument(
        "--postgres",
        action="store_true",
        help="also measure the PostgreSQL store, in new databases bench_* on the server of DATABASE_URL"
        " (else on one scripts/postgres.sh starts)",
    )
    bench.set_defaults(handler=run_bench)
    return parser


def load(args: argparse.Namespace) -> Config:
    from rag.config import load_config

    return load_config(args.config, doc=args.doc, index_dir=args.index_dir)


def open_engine(config: Config, rebuild: bool = False) -> Engine:
    from rag.engine import Engine

    return Engine.open(config, rebuild=rebuild, progress=lambda message: print(message, file=sys.stderr, flush=True))


def run_index(args: argparse.Namespace) -> int:
    config = load(args)
    if config.store.backend == "postgres":
        from rag.pgpublish import publish_index

        publish_index(config, args.rebuild, progress=lambda message: print(message, file=sys.stderr, flush=True))
        args.rebuild = False  # the published index is the one just built
    engine = open_engine(config, rebuild=args.rebuild)
    where = str(engine.config.index_dir)
    if config.store.backend == "postgres":
        where = f"the database (generation {engine.stored.manifest['published_generation']})"
    print(f"Index in {where}: {len(engine.stored.passages)} passages, up to date.")
    return 0


def run_add(args: argparse.Namespace) -> int:
    from rag.config import expand_documents
    from rag.embedding import load_embed_model
    from rag.ingest import display_path
    from rag.store import add_documents

    config = load(args)
    paths = expand_documents([path.resolve() for path in args.paths])  # files, folders and globs, as --doc takes
    started = time.perf_counter()
    result = add_documents(config, paths, load_embed_model(config.embedding, progress), progress)
    for document, action in result.actions:
        passages = next(e["passages"] for e in result.stored.manifest["documents"] if e["source"] == document.source)
        print(f"{action:<9} {display_path(document.path)}: {passages} passages")
    print(
        f"Embedded {result.counts.embedded} passages, reused {result.counts.reused}"
        f" ({count(len(result.stored.documents), 'document')}, {len(result.stored.passages)} passages in the index;"
        f" {time.perf_counter() - started:.1f} s)."
    )
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from rag.embedding import load_embed_model
    from rag.ingest import display_path
    from rag.store import remove_document

    config = load(args)
    stored, entry = remove_document(config, args.name, load_embed_model(config.embedding, progress), progress)
    print(
        f"Removed {display_path(Path(entry['source']))} ({entry['passages']} passages); the index holds"
        f" {count(len(stored.documents), 'document')}, {len(stored.passages)} passages."
    )
    return 0


def run_docs(args: argparse.Namespace) -> int:
    # opened like `ask` opens it: built or brought up to date for the configured documents (or --doc) first
    engine = open_engine(load(args))
    print(documents_table(engine.stored.manifest["documents"], "--doc" if args.doc else "config"))
    return 0


def documents_table(entries: list[dict[str, Any]], listed_in: str) -> str:
    """The indexed documents, one row each, for `rag docs` and the chat's /docs; `listed_in`
    names where the documents not added with `rag add` come from ("config" or "--doc")."""
    from rag.ingest import display_path

    rows = [
        (
            display_path(Path(e["source"])),
            str(e["passages"]),
            str(e["pages"]) if e.get("pages") else "-",
            e["added"].replace("T", " ").replace("+00:00", " UTC"),
            "rag add" if e["origin"] == "added" else listed_in,
        )
        for e in entries
    ]
    header = ("document", "passages", "pages", "added", "from")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(w) if i in (1, 2) else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def count(n: int, noun: str) -> str:
    """'1 document', '2 documents'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def progress(message: str) -> None:
    """Progress lines go to stderr, so that stdout holds only the result."""
    print(message, file=sys.stderr, flush=True)


def run_ask(args: argparse.Namespace) -> int:
    from rag import render
    from rag.engine import check_question, freeze_startup_objects

    config = load(args)
    question = check_question(args.question, config.answer.max_question_chars)  # before the slow load
    engine = open_engine(config)
    freeze_startup_objects(collect=False)
    answer = engine.ask(question)
    print(render.as_json(answer) if args.json else render.terminal(answer, bold=sys.stdout.isatty()))
    return 0


def run_chat(args: argparse.Namespace) -> int:
    from rag import render
    from rag.chat import is_goodbye
    from rag.engine import freeze_startup_objects

    config = load(args)
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    print("Loading the document and index...", file=sys.stderr, flush=True)
    engine = open_engine(config)
    freeze_startup_objects()
    session = engine.new_session()
    titles = ", ".join(d.title for d in engine.documents)
    print(f"Chatting with: {titles}. Type /help for commands, /quit to leave.")
    while True:
        try:
            line = input("\n> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not line:
            continue
        command = line.lower()
        if command in ("/quit", "/exit", "/q"):
            return 0
        if command == "/help":
            print(REPL_HELP)
        elif command == "/reset":
            session.reset()
            print("Conversation cleared.")
        elif command == "/sources":
            print(render.sources(session.last_answer))
        elif command == "/docs":
            print(documents_table(engine.stored.manifest["documents"], "--doc" if args.doc else "config"))
        elif command.startswith("/"):
            print(f"Unknown command {line.split()[0]}. The commands are:\n{REPL_COMMANDS}")
        else:
            try:
                print(render.terminal(engine.ask(line, session), bold=sys.stdout.isatty()))
            except (QuestionError, StoreUnavailableError) as exc:  # the chat goes on: ask again
                print(exc)
            if is_goodbye(line):  # the reply said goodbye: so does the chat
                return 0


def run_eval(args: argparse.Namespace) -> int:
    from rag.evaluate import evaluate, evaluate_squad, format_report, load_dataset, read_predictions, write_outputs

    config = load(args)
    if args.squad:
        from rag.rank import load_model, model_file
        from rag.squad import held_out_articles, load_squads, select

        training = load_model(model_file(config.answer.ranker_model, config.embedding.model)).training
        fitted = training.get("fit_articles", [])
        split = args.split or args.squad[0].parent / "split.json"
        everything = load_squads(args.squad)
        held_out = (
            held_out_articles(split)
            if args.split or split.exists()
            else [a.title for a in everything if a.title not in fitted]
        )
        articles = select(everything, args.articles, held_out)
        if not articles:
            from rag.errors import ConfigError

            raise ConfigError(f"--articles {args.articles}: no article of the SQuAD files is selected")
        seen = [a.title for a in articles if a.title in fitted]
        if seen:
            print(
                f"note: the ranker was fitted on {', '.join(seen)};"
                " scores there are not held-out figures (use --articles held-out)",
                file=sys.stderr,
            )
        print(
            f"Evaluating {len(articles)} SQuAD articles (indexes in {squad_folder(args, config)})...",
            file=sys.stderr,
            flush=True,
        )
        result = evaluate_squad(
            config,
            articles,
            squad_folder(args, config),
            progress=lambda message: print(message, file=sys.stderr, flush=True),
        )
    else:
        result = evaluate(open_engine(config), load_dataset(args.dataset))
    print(format_report(result))
    write_outputs(result, args.predictions, args.report)
    if args.report_html:
        from rag.report import write_html

        other = None
        if args.compare_predictions:
            other = (args.compare_predictions.name, read_predictions(args.compare_predictions))
        write_html(result, args.report_html, title=", ".join(map(str, args.squad or [args.dataset])), other=other)
        print(f"Report written to {args.report_html}", file=sys.stderr)
    return 0


def run_train(args: argparse.Namespace) -> int:
    import dataclasses
    import hashlib

    from rag.rank import load_model, model_file
    from rag.squad import held_out_articles, load_squads
    from rag.train import train
    from rag.train_short_answer import train_short_answer

    config = load(args)
    out = args.out
    split = args.split or args.squad[0].parent / "split.json"
    articles, held_out = load_squads(args.squad), held_out_articles(split)
    folder, progress = squad_folder(args, config), lambda message: print(message, file=sys.stderr, flush=True)
    sources = {
        "files": {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in [*args.squad, split]},
        "split": split.name,
        "code_revision": code_revision(),
    }
    if args.short_answer_only:
        base = load_model(model_file(config.answer.ranker_model, config.embedding.model))
        short_answer, figures = train_short_answer(config, articles, held_out, folder, progress)
        record = short_answer.to_json()
        record["training"] |= sources
        model = dataclasses.replace(base, short_answer=record)
    else:
        model, figures = train(config, articles, held_out, folder, progress)
        model.training.update(sources)
    model.save(out)
    print(f"Model written to {out} (threshold {model.threshold:.3f}); answer with it: answer.ranker_model: {out}")
    for key, value in figures.items():
        print(f"  {key:<32} {value:.4g}")
    return 0


def code_revision() -> str:
    """The git commit of the code that trains a model ("+changes" when the checkout has uncommitted
    ones), so a model file names what made it; "unknown" outside a git checkout."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--", "rag"], cwd=root, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("+changes" if changes.stdout.strip() else "")


def squad_folder(args: argparse.Namespace, config: Config) -> Path:
    """Where SQuAD articles are written and indexed: --index-dir, else <index_dir>/squad."""
    return args.index_dir if args.index_dir else config.index_dir / "squad"


def corpus_sizes(text: str) -> tuple[int, ...]:
    """--corpus-sizes: positive whole numbers separated by commas."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return sizes


def run_bench(args: argparse.Namespace) -> int:
    from rag.bench import run

    if args.compare_with is not None and not (args.compare_with / "rag" / "engine.py").is_file():
        print(f"error: --compare-with {args.compare_with}: not a source checkout (no rag/engine.py)", file=sys.stderr)
        return 2
    report = run(
        quick=args.quick,
        corpus=args.corpus,
        bot=not args.no_bot,
        cold_runs=max(args.cold_runs, 1),
        compare_with=args.compare_with,
        corpus_sizes=args.corpus_sizes,
        memory=not args.no_memory,
        postgres=args.postgres,
    )
    print(report)
    return 0
