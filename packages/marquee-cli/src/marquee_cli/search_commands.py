"""`marquee search create|index|query|show|reindex`: the search service by hand.

The service is `--address host:port`, or else the "search" process of the suite
running under `--data-dir` (its endpoints.json).

`create --schema FILE.json` reads `{"fields": [...], "default_sorting_field": ...}`
with Typesense's type names (`string`, `int32`, `string[]`, ...) or the proto's
(`FIELD_TYPE_STRING`); `index` streams a JSONL file (one document per line) in
batches, with a progress bar on stderr.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, TypeVar

import typer

from marquee_cli import output
from marquee_cli.cache_commands import DEFAULT_DATA_DIR, DataDir, Json, Timeout
from marquee_cli.names import printable
from marquee_cli.output import fail
from marquee_cli.rpc_output import message_dict, on_channel
from marquee_cli.service_address import suite_service_address

if TYPE_CHECKING:  # grpc and the protos load only in the commands that call the service
    from marquee.search.v1 import search_pb2, search_pb2_grpc

SEARCH_PROCESS = "search"
DEFAULT_TIMEOUT = 30.0
# gRPC's default receive limit, which the service keeps unless configured: a batch
# is cut before its documents reach it (with room for the message's framing).
MAX_BATCH_BYTES = 3 * 1024 * 1024
# The contract's bound on documents per Index call.
MAX_BATCH_DOCUMENTS = 10_000
ACTIONS = ("create", "upsert", "update", "emplace")
# How often `reindex --wait` asks for the progress.
POLL_SECONDS = 0.5

Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="MARQUEE_SEARCH_ADDRESS",
        help="Search service host:port (default: from the running suite).",
    ),
]
Name = Annotated[str, typer.Argument(callback=printable, metavar="NAME", help="The collection.")]

app = output.command_group("Create, fill, query and describe search collections.")

T = TypeVar("T")


def service_address(address: str | None, data_dir: Path) -> str:
    return suite_service_address(SEARCH_PROCESS, address, data_dir)


def call(target: str, action: Callable[[search_pb2_grpc.SearchServiceStub], T]) -> T:
    """Run `action` with a stub; a gRPC error becomes a CommandError (exit code 1)."""
    from marquee.search.v1 import search_pb2_grpc

    return on_channel("search", target, lambda c: action(search_pb2_grpc.SearchServiceStub(c)))


def whole_numbers_as_ints(value: Any) -> Any:
    """A hit's numbers come as doubles (google.protobuf.Struct): 1999.0 shows as 1999."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [whole_numbers_as_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: whole_numbers_as_ints(v) for k, v in value.items()}
    return value


def _field_type(name: str) -> str:
    """Typesense's type name (`string`, `int32[]`) as the proto enum's name."""
    if name.startswith("FIELD_TYPE_"):
        return name
    return "FIELD_TYPE_" + name.upper().replace("[]", "_ARRAY")


def schema_request(name: str, path: Path) -> search_pb2.EnsureCollectionRequest:
    from google.protobuf import json_format

    from marquee.search.v1 import search_pb2

    try:
        declared = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail(f"cannot read the schema {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(f"the schema {path} is not JSON: {exc}") from None
    if not isinstance(declared, dict) or not isinstance(declared.get("fields"), list):
        raise fail(f'the schema {path} must be an object with a "fields" list')
    body = {k: v for k, v in declared.items() if k != "name"}
    body["name"] = name
    fields = []
    for field in declared["fields"]:
        if not isinstance(field, dict):
            raise fail(f"the schema {path}: every field must be an object, not {field!r}")
        fields.append(dict(field, type=_field_type(str(field.get("type", "")))))
    body["fields"] = fields
    try:
        return json_format.ParseDict(body, search_pb2.EnsureCollectionRequest())
    except json_format.ParseError as exc:
        raise fail(f"the schema {path} does not fit: {exc}") from None


@app.command()
def create(
    name: Name,
    schema: Annotated[
        Path,
        typer.Option("--schema", dir_okay=False, help="The schema: a JSON file (see --help)."),
    ],
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Create collection NAME with the schema in FILE (or check that it has it).

    Again with the same schema it changes nothing; new optional fields are added;
    any other change is refused (FAILED_PRECONDITION).
    """
    request = schema_request(name, schema)
    target = service_address(address, data_dir)
    reply = call(target, lambda s: s.EnsureCollection(request, timeout=timeout))
    if json_output:
        typer.echo(output.render_json(message_dict(reply)))
        return
    verb = "created" if reply.created else "already exists:"
    typer.echo(f"{verb} collection {name!r} ({len(reply.collection.fields)} fields)")


def _batches(stream: BinaryIO, size: int) -> Iterator[tuple[list[tuple[int, str]], int]]:
    """(line number, text) of the non-blank lines, in batches; with the bytes each read."""
    batch: list[tuple[int, str]] = []
    batch_bytes = 0
    read = 0
    for number, raw in enumerate(stream, start=1):
        read += len(raw)
        if not raw.strip():
            continue
        # A line that is not UTF-8 goes as is (escaped): the service reports it unreadable.
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if batch and (len(batch) >= size or batch_bytes + len(raw) > MAX_BATCH_BYTES):
            yield batch, read - len(raw)
            batch, batch_bytes, read = [], 0, len(raw)
        batch.append((number, text))
        batch_bytes += len(raw)
    if batch or read:
        yield batch, read


@app.command()
def index(
    name: Name,
    file: Annotated[
        Path,
        typer.Argument(dir_okay=False, metavar="FILE", help="JSONL: one document per line."),
    ],
    action: Annotated[
        str,
        typer.Option(
            "--action", help="create, upsert (replace), update (merge) or emplace (merge/create)."
        ),
    ] = "upsert",
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, max=MAX_BATCH_DOCUMENTS, help="Documents per call."),
    ] = 1000,
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Index the documents of FILE into NAME, in batches; exits 1 if any failed.

    Each failure names its line; --json prints the summary with every failure.
    """
    if action not in ACTIONS:
        raise typer.BadParameter(f"--action must be one of {', '.join(ACTIONS)}")
    target = service_address(address, data_dir)
    from marquee.search.v1 import search_pb2

    enum_action = search_pb2.IndexAction.Value(f"INDEX_ACTION_{action.upper()}")
    try:
        stream = file.open("rb")
        total_bytes = file.stat().st_size
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}") from None
    succeeded = 0
    failures: list[dict[str, Any]] = []
    with (
        stream,
        typer.progressbar(
            length=total_bytes, label=f"indexing into {name}", file=typer.get_text_stream("stderr")
        ) as bar,
    ):
        for batch, read in _batches(stream, batch_size):
            if batch:
                request = search_pb2.IndexRequest(
                    collection=name,
                    documents=[search_pb2.Document(json=text) for _, text in batch],
                    action=enum_action,
                )
                reply = _index_batch(target, request, timeout)
                succeeded += reply.success_count
                failures.extend(
                    {"line": batch[result.index][0], "id": result.id, "error": result.error}
                    for result in reply.results
                    if not result.ok
                )
            bar.update(read)
    summary = {
        "collection": name,
        "documents": succeeded + len(failures),
        "succeeded": succeeded,
        "failed": len(failures),
        "failures": failures,
    }
    if json_output:
        typer.echo(output.render_json(summary))
    else:
        typer.echo(f"indexed {succeeded} documents into {name!r}, {len(failures)} failed")
        for failure in failures[:20]:
            typer.echo(f"  line {failure['line']}: {failure['error']}", err=True)
        if len(failures) > 20:
            typer.echo(f"  ... and {len(failures) - 20} more (--json lists all)", err=True)
    if failures:
        raise output.negative(f"{len(failures)} documents were not indexed")


def _index_batch(
    target: str, request: search_pb2.IndexRequest, timeout: float
) -> search_pb2.IndexResponse:
    return call(target, lambda s: s.Index(request, timeout=timeout))


def _split(values: list[str]) -> list[str]:
    """Repeated options, each possibly comma-separated: `--by a,b --by c`."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@app.command()
def query(
    name: Name,
    q: Annotated[str, typer.Argument(metavar="Q", help='The query text; "*" matches all.')],
    by: Annotated[
        list[str],
        typer.Option("--by", help="Fields to search in, by priority (repeat or comma-separate)."),
    ] = [],  # noqa: B006 - typer's way to declare a repeatable option
    filter_by: Annotated[
        str, typer.Option("--filter", help='A filter, e.g. "year:>=1990 && kind:=film".')
    ] = "",
    facet: Annotated[
        list[str], typer.Option("--facet", help="Fields to count values of (repeatable).")
    ] = [],  # noqa: B006
    sort: Annotated[
        list[str], typer.Option("--sort", help='Sort clauses, e.g. "year:desc" (repeatable).')
    ] = [],  # noqa: B006
    page: Annotated[int, typer.Option("--page", min=1, help="1-based page.")] = 1,
    per_page: Annotated[int, typer.Option("--per-page", min=1, max=250)] = 10,
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Search NAME for Q: the hits (one JSON document a line), then the facet counts."""
    target = service_address(address, data_dir)
    from marquee.search.v1 import search_pb2

    request = search_pb2.SearchRequest(
        collection=name,
        q=q,
        query_by=_split(by),
        filter_by=filter_by,
        facet_by=_split(facet),
        sort_by=_split(sort),
        page=page,
        per_page=per_page,
    )
    reply = call(target, lambda s: s.Search(request, timeout=timeout))
    if json_output:
        document = message_dict(reply)
        for hit in document["hits"]:
            hit["document"] = whole_numbers_as_ints(hit["document"])
        typer.echo(output.render_json(document))
        return
    first = (reply.page - 1) * per_page
    shown = f", {first + 1}-{first + len(reply.hits)}" if reply.hits else ""
    typer.echo(f"found {reply.found} of {reply.out_of} (page {reply.page}{shown})")
    for hit in reply.hits:
        document = whole_numbers_as_ints(message_dict(hit.document))
        typer.echo(json.dumps(document, ensure_ascii=False, sort_keys=True))
    for counts in reply.facet_counts:
        values = ", ".join(f"{c.value} ({c.count})" for c in counts.counts)
        typer.echo(f"{counts.field_name}: {values or '-'}")


def _progress_text(progress: search_pb2.ReindexProgress) -> str:
    from marquee.search.v1 import search_pb2

    state = search_pb2.ReindexState.Name(progress.state).removeprefix("REINDEX_STATE_").lower()
    text = (
        f"job {progress.job_id} {state}, "
        f"{progress.documents_done}/{progress.documents_total} documents"
    )
    if progress.HasField("finished_at"):
        text += f", finished {progress.finished_at.ToJsonString()}"
    elif progress.HasField("started_at"):
        text += f", started {progress.started_at.ToJsonString()}"
    if progress.error:
        text += f": {progress.error}"
    return text


@app.command()
def show(
    name: Name,
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Describe NAME: its fields, its document count and its latest reindex."""
    target = service_address(address, data_dir)
    from marquee.search.v1 import search_pb2

    request = search_pb2.GetCollectionRequest(name=name)
    collection = call(target, lambda s: s.GetCollection(request, timeout=timeout)).collection
    if json_output:
        typer.echo(output.render_json(message_dict(collection)))
        return
    typer.echo(f"collection {collection.name}: {collection.num_documents} documents")
    if collection.default_sorting_field:
        typer.echo(f"default sorting field: {collection.default_sorting_field}")
    rows = [
        [
            f.name,
            search_pb2.FieldType.Name(f.type).removeprefix("FIELD_TYPE_").lower(),
            "yes" if f.facet else "",
            "" if not f.HasField("sort") else ("yes" if f.sort else "no"),
            "" if not f.HasField("index") else ("yes" if f.index else "no"),
            "yes" if f.optional else "",
        ]
        for f in collection.fields
    ]
    typer.echo(output.render_table(["field", "type", "facet", "sort", "index", "optional"], rows))
    if collection.HasField("reindex"):
        typer.echo(f"reindex: {_progress_text(collection.reindex)}")


@app.command()
def reindex(
    name: Name,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job (a progress bar) until it ends.")
    ] = False,
    wait_timeout: Annotated[
        float,
        typer.Option("--wait-timeout", min=1, help="With --wait: give up after this many seconds."),
    ] = 3600.0,
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Queue a rebuild of NAME's index (or find the one queued); --wait follows it.

    With --wait, exits 1 if the job failed.
    """
    target = service_address(address, data_dir)
    from marquee.search.v1 import search_pb2

    request = search_pb2.ReindexRequest(collection=name)
    reply = call(target, lambda s: s.Reindex(request, timeout=timeout))
    document: dict[str, Any] = {"job_id": reply.job_id, "already_queued": reply.already_queued}
    if not json_output:
        how = "already queued" if reply.already_queued else "queued"
        typer.echo(f"reindex of {name!r}: job {reply.job_id} {how}")
    if not wait:
        if json_output:
            typer.echo(output.render_json(document))
        return
    progress = _follow(target, name, reply.job_id, timeout, wait_timeout)
    document["progress"] = message_dict(progress)
    if json_output:
        typer.echo(output.render_json(document))
    else:
        typer.echo(f"reindex: {_progress_text(progress)}")
    if progress.state != search_pb2.REINDEX_STATE_SUCCEEDED:
        raise output.negative(f"the reindex of {name!r} failed")


def _follow(
    target: str, name: str, job_id: int, timeout: float, wait_timeout: float
) -> search_pb2.ReindexProgress:
    """Poll GetCollection until job `job_id` ends, drawing its progress on stderr."""
    from marquee.search.v1 import search_pb2

    ended = (search_pb2.REINDEX_STATE_SUCCEEDED, search_pb2.REINDEX_STATE_FAILED)
    request = search_pb2.GetCollectionRequest(name=name)
    deadline = time.monotonic() + wait_timeout
    shown = 0
    bar = typer.progressbar(
        length=1, label=f"reindexing {name}", file=typer.get_text_stream("stderr")
    )
    with bar:
        while True:
            collection = call(
                target, lambda s: s.GetCollection(request, timeout=timeout)
            ).collection
            progress = collection.reindex
            if progress.job_id != job_id:
                raise fail(f"job {job_id} is no longer the collection's reindex")
            if progress.documents_total:
                bar.length = progress.documents_total
                bar.update(progress.documents_done - shown)
                shown = progress.documents_done
            if progress.state in ended:
                return progress
            if time.monotonic() > deadline:
                raise fail(f"job {job_id} did not end within {wait_timeout:g} s (still running)")
            time.sleep(POLL_SECONDS)
