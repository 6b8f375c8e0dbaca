"""`shoplm demo` (what `make demo` runs): a catalog in, a served storefront out, and the figures
of exactly what it serves, each with the `shoplm eval` command that reproduces it.

    shoplm demo                                     # Amazon Scientific from SHOPLM_DATA_DIR
    shoplm demo --items feed.xml                    # a Merchant Center feed, detected
    shoplm demo --items products.csv --events events.csv --format shopify --no-serve

Steps: the input (converted when it is a shop export), ingest and `data stats`, the
recommendation model (trained with a fast budget when there are events, evaluated against the
very directory served), search (fine-tuned with a fast budget when there are judged or clicked
queries, its served pipeline evaluated on queries it never trained on; else zero-shot), the
search index, then `shoplm serve`. Each step runs the function of its own command
(`shoplm ingest`, `train recommend`, `eval search`, ...), so the demo prints what they print.

Everything served for one input lives in DEMO_DIR/NAME/run-KEY/, KEY a hash of the input
files' contents: shop.db, index/, models/recommend-3min/, models/search-5min/, search/ (the
train and test queries) and eval/. Another input, or the same file changed, gets a directory of
its own, so nothing stale is reused; an unchanged input reuses its models and evaluations.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shlex
from pathlib import Path
from typing import Annotated, NamedTuple, Optional

import typer
from rich.markup import escape
from rich.table import Table

from shoplm.cli import data as data_cli
from shoplm.cli import recommend as recommend_cli
from shoplm.cli import search as search_cli
from shoplm.cli import serve as serve_cli
from shoplm.cli.common import ProgressBars, err, out, set_search_threads, settings_of
from shoplm.config import Settings
from shoplm.data.convert import CONVERTERS
from shoplm.data.convert import convert as run_convert
from shoplm.data.convert.base import json_records
from shoplm.data.readers import READERS, count_rows
from shoplm.errors import ConfigError, ConvertError, InputFileMissing, RecommendDataError, SourceFileMissing

SHOPLM_FORMAT = "shoplm"  # the files are shoplm's own items/events format: nothing to convert
FORMATS = (SHOPLM_FORMAT, *CONVERTERS)
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
GOOGLE_NS = "http://base.google.com/ns/1.0"  # the g: namespace of every Merchant Center XML feed
# Fewer distinct judged or clicked queries than this and search is served zero-shot: a fifth go
# to the test set, and the rest, split again into fine-tuning, dev and re-ranker queries, would
# teach and measure nothing.
MIN_SEARCH_QUERIES = 30
# The demo's test queries are a seeded split of their own (search_split_seed + 2): `train search`
# splits its file again with search_split_seed (dev) and search_split_seed + 1 (re-ranker), and a
# split with the same seed would send none of the remaining queries to its dev set.
TEST_SPLIT_SEED_OFFSET = 2


class DemoInput(NamedTuple):
    """The shoplm-format files the demo reads (converted when needed) and what they came from."""

    name: str  # names DEMO_DIR/NAME/
    label: str  # "Amazon Scientific", "feed.xml (merchant-center)"
    items: Path
    events: Path | None
    judgments: Path | None


class Run(NamedTuple):
    """The directories one input is served from."""

    root: Path
    store: str
    index: Path
    models: Path
    eval: Path


class Part(NamedTuple):
    """One served part, as the summary names it."""

    what: str  # "recommendations", "search"
    served: str  # the directory (or the bundled model) it is served from
    figure: str  # the figure, or why none applies
    reproduce: str  # the command that reproduces the figure; "" when there is none
    fast: str  # the fast demo setting it used; "" when none


def demo(
    ctx: typer.Context,
    items: Annotated[Optional[Path], typer.Option(help="Your catalog (make: ITEMS=): shoplm items (.csv, .jsonl, "
                                                  ".parquet), a Merchant Center feed (.xml, .tsv), a Shopify or "
                                                  "WooCommerce product CSV. Default: Amazon Scientific.")] = None,
    events: Annotated[Optional[Path], typer.Option(help="Behaviour log (EVENTS=): shoplm events, a GA4 BigQuery "
                                                   "export or OpenSearch UBI events (detected). A GA4 export "
                                                   "without --items brings its own catalog.")] = None,
    judgments: Annotated[Optional[Path], typer.Option(help="Judged query,item_id,relevance file (JUDGMENTS=).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help=f"What --items is (FORMAT=): {', '.join(FORMATS)}. "
                                               "Default: detected from the file.")] = None,
    demo_dir: Annotated[Path, typer.Option("--dir", help="Working directory (DEMO_DIR=).")] = Path("var/demo"),
    store: Annotated[Optional[str], typer.Option(help="Store URL (DEMO_STORE=). Default: sqlite:///RUN/shop.db, "
                                                 "RUN the input's run directory.")] = None,
    train_minutes: Annotated[float, typer.Option(min=0.01, help="Fast setting: minutes of recommendation training "
                                                 "(DEMO_TRAIN_MINUTES=).")] = 3.0,
    search_minutes: Annotated[float, typer.Option(min=0.01, help="Fast setting: minutes of search fine-tuning "
                                                  "(DEMO_SEARCH_MINUTES=).")] = 5.0,
    host: Annotated[Optional[str], typer.Option(help="Bind address (default: settings.host).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default: settings.port).")] = None,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve at the end, or stop at the summary.")] = True,
) -> None:
    """Convert, ingest, train, evaluate and serve one shop; print the figures of what is served.

    [bold]Example:[/bold] shoplm demo --items feed.xml --no-serve
    """
    settings = settings_of(ctx)
    source = resolve_input(settings, demo_dir, items, events, judgments, fmt)
    run = run_dirs(demo_dir, source, store)
    _step(f"ingest into {run.store}")
    ingest_and_stats(ctx, source, run)
    _step("recommendations")
    recommend_model, recommend_part = recommend_step(ctx, settings, source, run, train_minutes)
    _step("search")
    search_model, search_part = search_step(ctx, settings, source, run, search_minutes)
    served = settings.model_copy(update={"store_url": run.store, "search_index_dir": run.index,
                                         "models_dir": run.models, "recommend_model": recommend_model}
                                 | ({"encoder_model": search_model} if search_model else {}))
    _step(f"search index {run.index}")
    build_index(served, run)
    command = serve_command(served, recommend_model, search_model, host or settings.host, port or settings.port)
    print_summary(run, [recommend_part, search_part], command)
    if serve:
        _say(f"storefront: http://{host or settings.host}:{port or settings.port}   (API docs: /docs; Ctrl-C stops)")
        serve_cli.serve(_with(ctx, served), store=run.store, host=host, port=port)


# --- input ---------------------------------------------------------------------------------------

def resolve_input(settings: Settings, demo_dir: Path, items: Path | None, events: Path | None,
                  judgments: Path | None, fmt: str | None) -> DemoInput:
    """The files to serve: Amazon Scientific (converted once into DEMO_DIR/scientific/) without
    --items, else --items as it is (shoplm format) or converted into DEMO_DIR/NAME/."""
    for option, path in (("--items (ITEMS=)", items), ("--events (EVENTS=)", events),
                         ("--judgments (JUDGMENTS=)", judgments)):
        if path is not None and not path.exists():
            raise InputFileMissing(f"{path}: no such file, given as {option}; check the path (relative paths "
                                   f"start from {Path.cwd()})")
    if fmt is not None and fmt not in FORMATS:
        raise ConvertError(f"--format (FORMAT=) {fmt!r} is not a format the demo reads; expected one of "
                           f"{', '.join(FORMATS)}")
    events_fmt = detect_events_format(events) if events is not None else SHOPLM_FORMAT
    if items is None:
        if events_fmt == "ga4" and fmt is None:  # a GA4 export names its items: the catalog comes with it
            name = _slug(events.name.split(".")[0])
            _say(f"input: {events}, a GA4 export (detected), its items the catalog; converting it")
            files = convert_input("ga4", events, demo_dir / name)
            return DemoInput(name, f"{events} (ga4)", files["items"], files["events"], judgments)
        if events or fmt:
            raise ConfigError("--events and --format describe your own catalog; give --items (ITEMS=) too "
                              "(a GA4 export alone will do: its items become the catalog)")
        return amazon_scientific(settings, demo_dir, judgments)
    if events is not None and events_fmt != SHOPLM_FORMAT:
        _say(f"events: {events}, format {events_fmt} (detected); converting them")
        events = convert_input(events_fmt, events, demo_dir / _slug(items.name.split(".")[0]) / f"events-{events_fmt}",
                               what="events")["events"]
    detected = fmt or detect_format(items)
    how = "named by --format" if fmt else "detected"
    if detected == SHOPLM_FORMAT:
        _say(f"input: {items}, format shoplm ({how})")
        return DemoInput(_slug(items.resolve().parent.name), str(items), items, events, judgments)
    _say(f"input: {items}, format {detected} ({how}); converting it")
    name = _slug(items.name.split(".")[0])
    files = convert_input(detected, items, demo_dir / name)
    return DemoInput(name, f"{items} ({detected})", files["items"], events or files.get("events"),
                     judgments or files.get("judgments"))


def amazon_scientific(settings: Settings, demo_dir: Path, judgments: Path | None) -> DemoInput:
    src, dest = settings.data_dir / "amazon-scientific", demo_dir / "scientific"
    files = {"items": dest / "items.csv", "events": dest / "events.csv"}
    if all(path.is_file() for path in files.values()):
        _say(f"input: Amazon Scientific, converted before into {dest}")
    elif not src.is_dir():
        raise SourceFileMissing(f"{src}: no such directory; the demo's default data set is Amazon Scientific in "
                                "SHOPLM_DATA_DIR (see ../shared/data/README.md): set SHOPLM_DATA_DIR, or give your "
                                "own catalog with --items (ITEMS=)")
    else:
        _say(f"input: Amazon Scientific from {src}")
        files = convert_input("amazon-recbole", src, dest)
    return DemoInput("scientific", "Amazon Scientific", files["items"], files["events"], judgments)


def detect_format(path: Path) -> str:
    """shoplm's own files or the converter a file's start names: an XML feed in the g: namespace
    or a tab-separated one with id and title (merchant-center), a CSV with Handle, Title and
    Variant columns (shopify) or ID, Type, SKU and Name (woocommerce), one with item_id (shoplm)."""
    if path.is_dir():
        raise ConvertError(f"{path} is a directory; name its format with --format (FORMAT=): {', '.join(CONVERTERS)}")
    suffix = path.suffix.lower()
    if suffix == ".xml":
        with open(path, encoding="utf-8", errors="replace") as handle:
            if GOOGLE_NS in handle.read(1 << 16):
                return "merchant-center"
        raise ConvertError(f"{path}: XML without the g: namespace ({GOOGLE_NS}) of a Merchant Center feed; "
                           f"name its format with --format (FORMAT=): {', '.join(FORMATS)}")
    if suffix in (".csv", ".tsv", ".txt"):
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            first = handle.readline()
            header = {name.strip() for name in next(csv.reader([first], delimiter="\t" if "\t" in first else ","), [])}
        if "\t" in first and {"id", "title"} <= header:
            return "merchant-center"
        if "item_id" in header:
            return SHOPLM_FORMAT
        if {"Handle", "Title"} <= header and any(name.startswith("Variant ") for name in header):
            return "shopify"
        if {"ID", "Type", "SKU", "Name"} <= header:
            return "woocommerce"
        seen = ", ".join(sorted(header)[:8]) or "none"
        raise ConvertError(f"{path}: cannot tell the format from its columns ({seen}); name it with --format "
                           f"(FORMAT=): {', '.join(FORMATS)}")
    if suffix in READERS:
        return SHOPLM_FORMAT
    raise ConvertError(f"{path}: cannot tell the format of a '{suffix or '(none)'}' file; name it with --format "
                       f"(FORMAT=): {', '.join(FORMATS)}")


def detect_events_format(path: Path) -> str:
    """What a behaviour log is, from its first record: GA4's BigQuery export (`event_name`,
    `event_timestamp`), OpenSearch UBI (`action_name`), else shoplm's own events."""
    first = path
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(JSON_SUFFIXES))
        if not found:
            return SHOPLM_FORMAT
        first = found[0]
    if not first.name.lower().endswith(JSON_SUFFIXES):
        return SHOPLM_FORMAT
    for _, record, error in json_records(first):
        if error is None and isinstance(record, dict):
            record = record.get("_source", record)  # a UBI record dumped from OpenSearch
            if {"event_name", "event_timestamp"} <= record.keys():
                return "ga4"
            if "action_name" in record or "user_query" in record:
                return "ubi"
        break
    return SHOPLM_FORMAT


def convert_input(fmt: str, src: Path, dest: Path, what: str = "items") -> dict[str, Path]:
    """`shoplm data convert FMT SRC DEST`, its accepted/rejected summary printed; the files written."""
    _say(f"$ {shlex.join(['shoplm', 'data', 'convert', fmt, str(src), str(dest)])}")
    report = run_convert(fmt, src, dest)
    _say("converted: " + ", ".join(f"{name} {count:,}" for name, count in report.counts.items())
         + (f" (rejected rows on stderr and in {report.files['rejected']})" if report.rejected else ""))
    for rejected in report.rejected[:5]:
        err.print(f"rejected {rejected}", markup=False, highlight=False, soft_wrap=True)
    if len(report.rejected) > 5:
        err.print(f"... and {len(report.rejected) - 5} more rejected rows in {report.files.get('rejected')}",
                  markup=False, highlight=False)
    if what not in report.files or report.counts.get(what, 1) == 0:
        raise ConvertError(f"{src}: no {'product' if what == 'items' else 'event'} could be converted by the {fmt} "
                           "converter (rejected rows above); fix the export or name another --format")
    return report.files


def run_dirs(demo_dir: Path, source: DemoInput, store: str | None) -> Run:
    digest = hashlib.blake2b(digest_size=4)
    for path in (source.items, source.events, source.judgments):
        digest.update(b"\x00file\x00" if path else b"\x00none\x00")
        if path is not None:
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
    root = demo_dir / source.name / f"run-{digest.hexdigest()}"
    root.mkdir(parents=True, exist_ok=True)
    return Run(root, store or f"sqlite:///{root / 'shop.db'}", root / "index", root / "models", root / "eval")


def ingest_and_stats(ctx: typer.Context, source: DemoInput, run: Run) -> None:
    """`shoplm ingest` and `shoplm data stats`; stops if a record was rejected, since training and
    evaluation read every record of the files."""
    try:
        data_cli.ingest(ctx, items=source.items, events=source.events, judgments=source.judgments, store=run.store)
    except typer.Exit as stop:
        if stop.exit_code == 2:
            err.print("error: records were rejected (listed above); training and evaluation read every record of "
                      "the files, so fix or remove them and run the demo again", highlight=False, soft_wrap=True)
        raise
    data_cli.stats(ctx, store=run.store)


# --- recommendations ---------------------------------------------------------------------------

def recommend_step(ctx: typer.Context, settings: Settings, source: DemoInput, run: Run,
                   minutes: float) -> tuple[Path | None, Part]:
    """Train (or reuse) the model with the demo's budget and evaluate that very directory."""
    zero_shot = "zero-shot (text similarity + popularity)"
    if source.events is None:
        _say(f"recommendations: no events, so no recommendation model is trained; served {zero_shot}")
        return None, Part("recommendations", zero_shot, "none: no events, so no model is trained", "", "")
    model = run.models / f"recommend-{minutes:g}min"
    files = ["--items", str(source.items), "--events", str(source.events)]
    if (model / "params.json").is_file():
        _say(f"reusing {model} (trained before on these files)")
    else:
        _say(f"$ SHOPLM_RECOMMEND_MAX_MINUTES={minutes:g} "
             + shlex.join(["shoplm", "train", "recommend", *files, "--out", str(model)]))
        try:
            recommend_cli.train_recommend(_with(ctx, settings.model_copy(update={"recommend_max_minutes": minutes})),
                                          source.items, source.events, model)
        except RecommendDataError as problem:  # too few events to learn from: the service still answers
            _say(f"recommendations: not trained ({problem}); served {zero_shot}")
            return None, Part("recommendations", zero_shot, f"none: {problem}", "", "")
    result_path, report = run.eval / f"recommend-{minutes:g}min.json", run.eval / f"recommend-{minutes:g}min"
    reproduce = shlex.join(["shoplm", "eval", "recommend", *files, "--model", str(model), "--json", str(result_path),
                            "--report", str(report)])
    if _fresh(result_path, model / "params.json"):
        _say(f"evaluated before: {result_path}")
        result = json.loads(result_path.read_text())
        recommend_cli.print_table(result)
    else:
        _say(f"$ {reproduce}")
        recommend_cli.eval_recommend(ctx, source.items, source.events, result_path, model_dir=model, report_dir=report)
        result = json.loads(result_path.read_text())
    return model, Part("recommendations", str(model), recommend_figure(result), reproduce,
                       _fast("recommendation model", "training", minutes, "DEMO_TRAIN_MINUTES",
                             "recommend_max_minutes", "shoplm train recommend"))


def recommend_figure(result: dict) -> str:
    models, cases = result["models"], result["dataset"]["test_cases"]
    best = max((name for name in models if name != "shoplm"), key=lambda name: models[name]["ndcg@10"])
    return (f"shoplm (this model) NDCG@10 {models['shoplm']['ndcg@10']:.4f}, Recall@10 "
            f"{models['shoplm']['recall@10']:.4f} on {cases:,} test cases (each actor's last event, full ranking); "
            f"best baseline {best} NDCG@10 {models[best]['ndcg@10']:.4f}; /v1/recommend serves it mixed with "
            "popularity by history length as its blend.json says (tuned on the validation targets)")


# --- search ------------------------------------------------------------------------------------

def search_step(ctx: typer.Context, settings: Settings, source: DemoInput, run: Run,
                minutes: float) -> tuple[Path | None, Part]:
    """Fine-tune on the judged or clicked queries, evaluate the served pipeline on held-out
    ones; without enough of them, search is served zero-shot."""
    judged, where = judged_queries(settings, source)
    queries = sorted({j.query for j in judged})
    zero_shot = f"zero-shot ({settings.encoder_model or 'the bundled all-MiniLM-L6-v2'} + BM25)"
    if len(queries) < MIN_SEARCH_QUERIES:
        reason = (f"{source.label} has {len(queries)} {where}, fewer than the {MIN_SEARCH_QUERIES} fine-tuning needs"
                  if queries else f"{source.label} has no judged or clicked queries")
        _say(f"search: served {zero_shot}, not fine-tuned: {reason}; no search figure applies")
        return None, Part("search", zero_shot, f"none applies: {reason}", "", "")
    train, test = write_query_split(settings, judged, run.root / "search")
    if count_rows(test) <= 1:  # the header alone: the seeded split held no query out (rare, with 30 or more)
        reason = f"the seeded split of {source.label}'s {len(queries)} {where} held none out to measure on"
        _say(f"search: served {zero_shot}, not fine-tuned: {reason}; no search figure applies")
        return None, Part("search", zero_shot, f"none applies: {reason}", "", "")
    model = run.models / f"search-{minutes:g}min"
    if (model / "shoplm_train.json").is_file():
        _say(f"reusing {model} (fine-tuned before on these queries)")
    else:
        _say("$ " + shlex.join(["shoplm", "train", "search", "--items", str(source.items), "--judgments", str(train),
                                "--out", str(model), "--max-minutes", f"{minutes:g}"]))
        search_cli.train_search(ctx, source.items, model, judgments=train, max_minutes=minutes)
    result_path, report = run.eval / f"search-{minutes:g}min.json", run.eval / f"search-{minutes:g}min"
    reproduce = shlex.join(["shoplm", "eval", "search", "--items", str(source.items), "--judgments", str(train),
                            "--test-judgments", str(test), "--model", str(model), "--json", str(result_path),
                            "--report", str(report)])
    if _fresh(result_path, model / "shoplm_train.json"):
        _say(f"evaluated before: {result_path}")
        print_search(json.loads(result_path.read_text()))
    else:
        _say(f"$ {reproduce}")
        search_cli.eval_search(ctx, source.items, train, test_judgments=test, model=model, json_out=result_path,
                               report=report)
    result = json.loads(result_path.read_text())
    m = result["models"]
    figure = (f"served pipeline (hybrid_ft_served) NDCG@10 {m['hybrid_ft_served']['ndcg@10']:.4f} against BM25 "
              f"{m['bm25']['ndcg@10']:.4f} and zero-shot hybrid_served {m['hybrid_served']['ndcg@10']:.4f}, on "
              f"{result['n_queries']:,} {where} held out of training ({test})")
    return model, Part("search", str(model), figure, reproduce,
                       _fast("search model", "fine-tuning", minutes, "DEMO_SEARCH_MINUTES", "search_max_minutes",
                             "shoplm train search"))


def judged_queries(settings: Settings, source: DemoInput) -> tuple[list, str]:
    """The judgments file's rows, else the (query, item) pairs of the events where a search was
    followed by a click, add_to_cart or purchase (weighted by type, as `train search --events`
    reads them); and what they are."""
    from shoplm.data.readers import read_events, read_judgments
    from shoplm.data.records import Judgment
    from shoplm.search.data import pairs_from_events

    if source.judgments is not None:
        return read_judgments(source.judgments), "judged queries"
    if source.events is None:
        return [], "judged or clicked queries"
    pairs = pairs_from_events(read_events(source.events), settings.search_event_window_s, settings.event_weights)
    judged = [Judgment(p.query, p.item_id, p.weight) for p in pairs]
    return judged, "clicked queries (a search, then a click, cart or purchase)"


def write_query_split(settings: Settings, judged: list, directory: Path) -> tuple[Path, Path]:
    """train.csv and test.csv of `directory`: the judged rows split by query (seeded), so no
    test query is fine-tuned on or tunes anything."""
    from shoplm.data.writers import write_records
    from shoplm.search.data import split_queries

    train, test = directory / "train.csv", directory / "test.csv"
    if not (train.is_file() and test.is_file()):  # the run directory is keyed by the input: the split is too
        held = set(split_queries({j.query for j in judged}, settings.search_dev_fraction,
                                 settings.search_split_seed + TEST_SPLIT_SEED_OFFSET).dev)
        directory.mkdir(parents=True, exist_ok=True)
        columns = ["query", "item_id", "relevance"]
        write_records(test, columns, [(j.query, j.item_id, j.relevance) for j in judged if j.query in held])
        write_records(train, columns, [(j.query, j.item_id, j.relevance) for j in judged if j.query not in held])
    return train, test


def print_search(result: dict) -> None:
    """The table `shoplm eval search` printed, from its --json document."""
    table = Table(title=f"search on {result['n_queries']} {result.get('queries', 'dev')} queries")
    table.add_column("system")
    metrics = list(next(iter(result["models"].values())))
    for metric in metrics:
        table.add_column(metric, justify="right")
    for name, values in result["models"].items():
        table.add_row(name, *(f"{values[m]:.4f}" for m in metrics))
    out.print(table)


# --- index, summary, serving ---------------------------------------------------------------------

def build_index(served: Settings, run: Run) -> None:
    """The vector and BM25 indexes `shoplm serve` opens, built now (with progress) unless they
    are current for this catalog and model; serving then starts at once."""
    from shoplm.atomic import dir_lock
    from shoplm.search.pipeline import build_indexes, catalog_key
    from shoplm.store import open_store

    db = open_store(served.store_url)
    try:
        catalog = db.items()
    finally:
        db.close()
    set_search_threads(served)
    key = catalog_key(catalog, served)
    params = run.index / "params.json"
    with dir_lock(run.index):
        if params.is_file() and json.loads(params.read_text()).get("catalog") == key:
            _say(f"search index: current for these {len(catalog):,} items")
            return
        with ProgressBars(lines=True) as progress:
            built = build_indexes(catalog, served, run.index, progress=progress, catalog=key)
    _say(f"search index: {built['count']:,} items ({'HNSW' if built['hnsw'] else 'exact'} vectors + BM25)")


def serve_command(served: Settings, recommend_model: Path | None, search_model: Path | None, host: str,
                  port: int) -> str:
    env = {"SHOPLM_RECOMMEND_MODEL": recommend_model, "SHOPLM_ENCODER_MODEL": search_model,
           "SHOPLM_MODELS_DIR": served.models_dir, "SHOPLM_SEARCH_INDEX_DIR": served.search_index_dir}
    return " ".join([*(f"{k}={shlex.quote(str(v))}" for k, v in env.items() if v is not None),
                     shlex.join(["shoplm", "serve", "--store", served.store_url, "--host", host, "--port", str(port)])])


def print_summary(run: Run, parts: list[Part], command: str) -> None:
    _step("what is served, and its figures")
    _say(f"store: {run.store}")
    for part in parts:
        _say(f"{part.what}: {part.served}")
        _say(f"  figure: {part.figure}")
        if part.reproduce:
            _say(f"  reproduce: {part.reproduce}")
        if part.fast:
            _say(f"  fast demo setting: {part.fast}")
    if not any(part.fast for part in parts):
        _say("fast demo settings: none")
    _say(f"serve: {command}")


def _fast(what: str, doing: str, minutes: float, variable: str, setting: str, command: str) -> str:
    default = Settings.model_fields[setting].default
    if minutes >= default:
        return ""
    return (f"{what}: {minutes:g}-minute {doing} budget ({variable}={minutes:g}); `{command}` defaults to "
            f"{default:g} minutes (SHOPLM_{setting.upper()}), the budget of the README's Results figures")


def _fresh(result: Path, model_marker: Path) -> bool:
    """An evaluation written after the model it scored was."""
    return result.is_file() and result.stat().st_mtime >= model_marker.stat().st_mtime


def _with(ctx: typer.Context, settings: Settings) -> typer.Context:
    """A context whose settings (`settings_of`) another command's function then reads."""
    return typer.Context(ctx.command, parent=ctx, obj=settings)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "shop"


def _step(title: str) -> None:
    out.rule(escape(title), style="bold", characters="-")


def _say(text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)
