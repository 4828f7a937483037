"""`marquee search create|index|query|show|reindex` against an in-process search service."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from pydantic import PostgresDsn
from typer.testing import CliRunner, Result

from marquee_cli.main import app
from marquee_search.app import register
from marquee_search.settings import SearchSettings
from marquee_testing.inprocess import RunningService, serving

runner = CliRunner()
DEMO = resources.files("marquee_search.demo")
SCHEMA = {
    "fields": [
        {"name": "title", "type": "string"},
        {"name": "year", "type": "int32", "facet": True},
        {"name": "genres", "type": "string[]", "facet": True, "optional": True},
    ],
    "default_sorting_field": "year",
}
FILMS = [
    {"id": "1", "title": "The Silent Harbor", "year": 1999, "genres": ["drama"]},
    {"id": "2", "title": "Crimson Orchard", "year": 2004, "genres": ["drama", "mystery"]},
    {"id": "3", "title": "Paper Lantern", "year": 2011},
    {"id": "4", "title": "Harbor Lights", "year": 2020, "genres": ["comedy"]},
]


@pytest.fixture
async def search(tmp_path: Path) -> AsyncIterator[RunningService]:
    settings = SearchSettings(grpc_port=0, metrics_port=-1, data_dir=tmp_path / "search")
    async with serving("search", settings, register) as running:
        yield running


async def marquee(service: RunningService, *args: str) -> Result:
    # The command blocks on its own channel: off this loop, which serves the service.
    argv = ["search", *args, "--address", service.address]
    return await asyncio.to_thread(runner.invoke, app, argv)


def error_of(result: Result) -> Any:
    assert result.exit_code == 1, result.output
    return json.loads(result.stdout)["error"]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def schema_file(tmp_path: Path) -> Path:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA))
    return path


async def make_films(service: RunningService, schema_file: Path, tmp_path: Path) -> None:
    created = await marquee(service, "create", "films", "--schema", str(schema_file))
    assert created.exit_code == 0, created.output
    data = write_jsonl(tmp_path / "films.jsonl", [json.dumps(f) for f in FILMS])
    indexed = await marquee(service, "index", "films", str(data))
    assert indexed.exit_code == 0, indexed.output


async def test_create_then_show(search: RunningService, schema_file: Path, tmp_path: Path) -> None:
    created = await marquee(search, "create", "films", "--schema", str(schema_file))
    assert created.exit_code == 0, created.output
    assert created.stdout == "created collection 'films' (3 fields)\n"
    again = await marquee(search, "create", "films", "--schema", str(schema_file), "--json")
    assert json.loads(again.stdout)["created"] is False

    shown = await marquee(search, "show", "films")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0] == "collection films: 0 documents"
    assert lines[1] == "default sorting field: year"
    assert lines[2].split() == ["field", "type", "facet", "sort", "index", "optional"]
    assert lines[5].split() == ["genres", "string_array", "yes", "no", "yes", "yes"]
    as_json = json.loads((await marquee(search, "show", "films", "--json")).stdout)
    assert [f["type"] for f in as_json["fields"]] == [
        "FIELD_TYPE_STRING",
        "FIELD_TYPE_INT32",
        "FIELD_TYPE_STRING_ARRAY",
    ]


async def test_bad_schemas_and_unknown_collections(search: RunningService, tmp_path: Path) -> None:
    not_json = tmp_path / "bad.json"
    not_json.write_text("{fields: ")
    result = await marquee(search, "create", "x", "--schema", str(not_json), "--json")
    assert "is not JSON" in error_of(result)["message"]

    unknown_type = tmp_path / "type.json"
    unknown_type.write_text(json.dumps({"fields": [{"name": "a", "type": "text"}]}))
    result = await marquee(search, "create", "x", "--schema", str(unknown_type), "--json")
    assert "does not fit" in error_of(result)["message"]

    # The service's own checks come back with their status.
    no_sort = tmp_path / "sort.json"
    no_sort.write_text(
        json.dumps({"fields": [{"name": "a", "type": "string"}], "default_sorting_field": "b"})
    )
    error = error_of(await marquee(search, "create", "x", "--schema", str(no_sort), "--json"))
    assert error["grpc_status"] == "INVALID_ARGUMENT"
    assert "default_sorting_field" in error["message"]

    missing = await marquee(search, "create", "x", "--schema", str(tmp_path / "absent.json"))
    assert missing.exit_code == 1
    assert "cannot read the schema" in missing.stderr

    error = error_of(await marquee(search, "show", "absent", "--json"))
    assert error["grpc_status"] == "NOT_FOUND"
    text = await marquee(search, "query", "absent", "x", "--by", "title")
    assert text.exit_code == 1
    assert "NOT_FOUND" in text.stderr


async def test_index_reports_each_failed_line(
    search: RunningService, schema_file: Path, tmp_path: Path
) -> None:
    await marquee(search, "create", "films", "--schema", str(schema_file))
    lines = [json.dumps(f) for f in FILMS[:2]]
    lines += ["", "{not json", json.dumps({"id": "9", "title": "No Year"})]
    lines += [json.dumps(f) for f in FILMS[2:]]
    data = write_jsonl(tmp_path / "films.jsonl", lines)
    # Batches of two: the failures keep their line numbers across batches.
    result = await marquee(search, "index", "films", str(data), "--batch-size", "2", "--json")
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert (summary["documents"], summary["succeeded"], summary["failed"]) == (6, 4, 2)
    assert [f["line"] for f in summary["failures"]] == [4, 5]
    assert summary["failures"][1]["id"] == "9"
    assert "year" in summary["failures"][1]["error"]
    assert "indexing into films" in result.stderr

    text = await marquee(search, "index", "films", str(data))
    assert text.exit_code == 1
    assert text.stdout == "indexed 4 documents into 'films', 2 failed\n"
    assert "line 5:" in text.stderr

    bad_action = await marquee(search, "index", "films", str(data), "--action", "merge")
    assert bad_action.exit_code == 2


async def test_query_options(search: RunningService, schema_file: Path, tmp_path: Path) -> None:
    await make_films(search, schema_file, tmp_path)
    result = await marquee(search, "query", "films", "harbor", "--by", "title")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "found 2 of 4 (page 1, 1-2)"
    # Equal relevance: the default sorting field (year) decides, highest first.
    assert [json.loads(line)["id"] for line in lines[1:]] == ["4", "1"]
    assert json.loads(lines[1])["year"] == 2020  # not 2020.0, as the Struct carries it

    result = await marquee(
        search, "query", "films", "*", "--filter", "year:>=2000", "--facet", "genres",
        "--sort", "year:asc", "--per-page", "1", "--page", "2", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    reply = json.loads(result.stdout)
    assert reply["found"] == "3"  # int64 in proto JSON is a string
    assert [h["document"] for h in reply["hits"]] == [FILMS[2]]
    facets = {c["value"]: c["count"] for c in reply["facet_counts"][0]["counts"]}
    assert facets == {"drama": "1", "mystery": "1", "comedy": "1"}

    error = error_of(await marquee(search, "query", "films", "x", "--by", "nope", "--json"))
    assert error["grpc_status"] == "INVALID_ARGUMENT"


async def test_demo_catalogue_loads_through_the_cli(search: RunningService) -> None:
    with (
        resources.as_file(DEMO / "schema.json") as schema,
        resources.as_file(DEMO / "films.jsonl") as films,
    ):
        created = await marquee(search, "create", "demo", "--schema", str(schema))
        assert created.exit_code == 0, created.output
        indexed = await marquee(search, "index", "demo", str(films), "--batch-size", "100")
    assert indexed.exit_code == 0, indexed.output
    shown = await marquee(search, "show", "demo", "--json")
    assert json.loads(shown.stdout)["num_documents"] == "240"


async def test_reindex_needs_the_job_database(
    search: RunningService, schema_file: Path, tmp_path: Path
) -> None:
    await make_films(search, schema_file, tmp_path)
    result = await marquee(search, "reindex", "films")
    assert result.exit_code == 1
    assert "FAILED_PRECONDITION" in result.stderr
    assert "MARQUEE_SEARCH_DATABASE_URL" in result.stderr


async def test_reindex_waits_for_the_job(
    tmp_path: Path, scratch_database_url: str, schema_file: Path
) -> None:
    settings = SearchSettings(
        grpc_port=0,
        metrics_port=-1,
        data_dir=tmp_path / "search",
        database_url=PostgresDsn(scratch_database_url),
    )
    async with serving("search", settings, register) as service:
        await make_films(service, schema_file, tmp_path)
        result = await marquee(service, "reindex", "films", "--wait", "--json")
        assert result.exit_code == 0, result.output
        reply = json.loads(result.stdout)
        assert reply["already_queued"] is False
        assert reply["progress"]["state"] == "REINDEX_STATE_SUCCEEDED"
        assert reply["progress"]["documents_done"] == "4"

        shown = await marquee(service, "show", "films")
        last = shown.stdout.splitlines()[-1]
        assert last.startswith(f"reindex: job {reply['job_id']} succeeded, 4/4 documents")


def test_without_an_address_it_reads_the_suite(tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", "show", "films", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no suite running" in result.stderr


# As test_cli_startup: a command that fails before calling out loads no grpc.
SCRIPT = """
import sys
from typer.testing import CliRunner
from marquee_cli.main import app
CliRunner().invoke(app, sys.argv[1:])
print("\\n".join(sorted(sys.modules)))
"""


@pytest.mark.parametrize("command", ["show", "query", "reindex"])
def test_search_commands_load_grpc_only_to_call(command: str, tmp_path: Path) -> None:
    argv = ["search", command, "films", *(["x"] if command == "query" else [])]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv, "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules = set(done.stdout.split())
    heavy = {m for m in modules if m.split(".")[0] in ("grpc", "marquee", "marquee_search")}
    assert heavy == set()
    assert "google.protobuf" not in modules
