"""`marquee media put|get|stat|rm|transcode`: the media service by hand.

The service is `--address host:port`, or else the "media" process of the suite
running under `--data-dir`. Every media call needs an access token from auth:
`--token`, or `MARQUEE_TOKEN`, or the one `marquee auth login` saved for the
suite (credentials.py).

`put` streams a file (or stdin, `-`) in chunks and `get` streams to a file (or
stdout), so neither holds an object in memory. `transcode --out DIR` waits for
the session to finish and copies its playlists and segments into DIR with
their relative names, ready for `ffplay DIR/master.m3u8`.
"""

from __future__ import annotations

import mimetypes
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, BinaryIO, TypeVar

import typer

from marquee_cli import output
from marquee_cli.cache_commands import DEFAULT_DATA_DIR, DataDir, Json, Timeout
from marquee_cli.credentials import bearer
from marquee_cli.names import printable
from marquee_cli.output import fail
from marquee_cli.rpc_output import message_dict, on_channel
from marquee_cli.service_address import suite_service_address

if TYPE_CHECKING:  # grpc and the protos load only in the commands that call the service
    from marquee.media.v1 import media_pb2, media_pb2_grpc

MEDIA_PROCESS = "media"
DEFAULT_TIMEOUT = 30.0
# Far below gRPC's 4 MiB message limit; large enough that framing costs nothing.
CHUNK_BYTES = 256 * 1024
POLL_SECONDS = 0.5
MASTER = "master.m3u8"

Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="MARQUEE_MEDIA_ADDRESS",
        help="Media service host:port (default: from the running suite).",
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="MARQUEE_TOKEN",
        help="Access token (default: the one `marquee auth login` saved).",
        show_default=False,
    ),
]
Key = Annotated[str, typer.Argument(callback=printable, metavar="KEY", help="The object's key.")]

app = output.command_group("Store, read and transcode media objects.")

T = TypeVar("T")


class Media:
    """A channel to media with the caller's token on every call."""

    def __init__(self, address: str | None, data_dir: Path, token: str | None) -> None:
        self.target = suite_service_address(MEDIA_PROCESS, address, data_dir)
        self.metadata = bearer(token, data_dir)

    def call(self, action: Callable[[media_pb2_grpc.MediaServiceStub], T]) -> T:
        """Run `action` with a stub; a gRPC error becomes a CommandError (exit code 1)."""
        from marquee.media.v1 import media_pb2_grpc

        stub = media_pb2_grpc.MediaServiceStub
        return on_channel("media", self.target, lambda channel: action(stub(channel)))


def object_line(info: media_pb2.ObjectInfo) -> str:
    return f"{info.key}  {info.size} bytes  {info.content_type}  sha256 {info.sha256 or '-'}"


def _open_source(file: str) -> BinaryIO:
    if file == "-":
        return sys.stdin.buffer
    try:
        return Path(file).open("rb")
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}") from None


def _uploads(header: media_pb2.UploadHeader, source: BinaryIO) -> Iterator[media_pb2.UploadRequest]:
    from marquee.media.v1 import media_pb2

    yield media_pb2.UploadRequest(header=header)
    while chunk := source.read(CHUNK_BYTES):
        yield media_pb2.UploadRequest(chunk=chunk)


@app.command()
def put(
    key: Key,
    file: Annotated[str, typer.Argument(metavar="FILE", help="The content; - reads stdin.")],
    content_type: Annotated[
        str | None,
        typer.Option("--content-type", help="MIME type (default: guessed from FILE's name)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace KEY if it exists.")
    ] = False,
    address: Address = None,
    token: Token = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Store FILE as KEY, streamed in chunks; KEY must be new unless --overwrite."""
    from marquee.media.v1 import media_pb2

    media = Media(address, data_dir, token)
    guessed = mimetypes.guess_type(file)[0] if file != "-" else None
    size = Path(file).stat().st_size if file != "-" and Path(file).is_file() else 0
    header = media_pb2.UploadHeader(
        key=key,
        content_type=content_type or guessed or "",
        size_hint=size,
        overwrite=overwrite,
    )
    source = _open_source(file)
    try:
        reply = media.call(
            lambda s: s.Upload(_uploads(header, source), timeout=timeout, metadata=media.metadata)
        )
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    if json_output:
        typer.echo(output.render_json(message_dict(reply.object)))
    else:
        typer.echo(f"stored {object_line(reply.object)}")


@app.command()
def get(
    key: Key,
    out: Annotated[
        str, typer.Argument(metavar="[OUT]", help="Where to write; - (default) is stdout.")
    ] = "-",
    offset: Annotated[int, typer.Option("--offset", min=0, help="First byte to read.")] = 0,
    length: Annotated[
        int, typer.Option("--length", min=0, help="Bytes to read from --offset; 0: to the end.")
    ] = 0,
    address: Address = None,
    token: Token = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Write KEY (or a byte range of it) to OUT, streamed; a file is written whole or not at all."""
    from marquee.media.v1 import media_pb2

    media = Media(address, data_dir, token)
    request = media_pb2.DownloadRequest(key=key, offset=offset, length=length)
    if out == "-":
        media.call(
            lambda s: _copy(
                s.Download(request, timeout=timeout, metadata=media.metadata), sys.stdout.buffer
            )
        )
        sys.stdout.buffer.flush()
        return
    target = Path(out)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("wb") as sink:
            written = media.call(
                lambda s: _copy(s.Download(request, timeout=timeout, metadata=media.metadata), sink)
            )
        partial.replace(target)
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    typer.echo(f"wrote {written} bytes of {key} to {out}", err=True)


def _copy(stream: Iterator[media_pb2.DownloadResponse], sink: BinaryIO) -> int:
    written = 0
    for message in stream:
        if message.WhichOneof("part") == "chunk":
            sink.write(message.chunk)
            written += len(message.chunk)
    return written


@app.command()
def stat(
    key: Key,
    address: Address = None,
    token: Token = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Show KEY's size, content type, checksum and metadata (exit 1 if absent)."""
    from marquee.media.v1 import media_pb2

    media = Media(address, data_dir, token)
    reply = media.call(
        lambda s: s.Stat(media_pb2.StatRequest(key=key), timeout=timeout, metadata=media.metadata)
    )
    if json_output:
        typer.echo(output.render_json(message_dict(reply.object)))
        return
    typer.echo(object_line(reply.object))
    for name, value in sorted(reply.object.metadata.items()):
        typer.echo(f"  {name}: {value}")


@app.command()
def rm(
    key: Key,
    address: Address = None,
    token: Token = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Delete KEY; exit 1 if there was no such object."""
    from marquee.media.v1 import media_pb2

    media = Media(address, data_dir, token)
    reply = media.call(
        lambda s: s.Delete(
            media_pb2.DeleteRequest(key=key), timeout=timeout, metadata=media.metadata
        )
    )
    if json_output:
        typer.echo(output.render_json({"key": key, "deleted": reply.deleted}))
    if not reply.deleted:
        raise output.negative(f"no object {key!r}")
    if not json_output:
        typer.echo(f"deleted {key}")


@app.command()
def transcode(
    key: Key,
    profile: Annotated[str, typer.Option("--profile", help="The server's preset.")] = "",
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until every rendition is produced.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", file_okay=False, help="Copy the finished HLS output here (implies --wait)."
        ),
    ] = None,
    max_wait: Annotated[
        float, typer.Option("--max-wait", min=1, help="Seconds to wait for the session.")
    ] = 600.0,
    address: Address = None,
    token: Token = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Start an HLS transcode of KEY; print the session once its playlist is ready.

    With --out DIR the output is copied to DIR; play it with `ffplay DIR/master.m3u8`.
    """
    from marquee.media.v1 import media_pb2

    media = Media(address, data_dir, token)
    start = media_pb2.StartTranscodeRequest(source_key=key, profile=profile)
    session = media.call(
        lambda s: s.StartTranscode(start, timeout=timeout, metadata=media.metadata)
    ).session
    session = _until_ready(media, session, everything=wait or out is not None, limit=max_wait)
    if out is not None:
        files = _copy_output(media, session.session_id, out, timeout)
        if not json_output:
            typer.echo(f"copied {files} files to {out}; play: ffplay {out / MASTER}", err=True)
    if json_output:
        typer.echo(output.render_json(message_dict(session)))
        return
    state = media_pb2.TranscodeState.Name(session.state).removeprefix("TRANSCODE_STATE_")
    produced = session.transcoded.ToTimedelta().total_seconds()
    typer.echo(
        f"session {session.session_id}  {state.lower()}  {produced:.1f} s produced  "
        f"variants {', '.join(session.variants) or '-'}"
    )


def _until_ready(
    media: Media, session: media_pb2.TranscodeSession, *, everything: bool, limit: float
) -> media_pb2.TranscodeSession:
    """Poll the session until its playlists have content (or it completed, with `everything`)."""
    from marquee.media.v1 import media_pb2

    deadline = time.monotonic() + limit
    request = media_pb2.GetTranscodeRequest(session_id=session.session_id)
    while True:
        if session.state == media_pb2.TRANSCODE_STATE_FAILED:
            raise fail(f"transcode {session.session_id} failed: {session.error}")
        if session.state == media_pb2.TRANSCODE_STATE_COMPLETED:
            return session
        if not everything and session.transcoded.ToTimedelta().total_seconds() > 0:
            return session
        if time.monotonic() > deadline:
            raise fail(f"transcode {session.session_id} not ready within {limit:g} s")
        time.sleep(POLL_SECONDS)
        session = media.call(
            lambda s: s.GetTranscode(request, timeout=POLL_SECONDS * 20, metadata=media.metadata)
        ).session


def _copy_output(media: Media, session_id: str, out: Path, timeout: float) -> int:
    """The master playlist, each variant's playlist and its segments, by their relative names."""
    from marquee.media.v1 import media_pb2

    def playlist(variant: str) -> str:
        request = media_pb2.GetPlaylistRequest(session_id=session_id, variant=variant)
        return media.call(
            lambda s: s.GetPlaylist(request, timeout=timeout, metadata=media.metadata)
        ).playlist

    def save(name: str, content: bytes) -> None:
        relative = PurePosixPath(name)
        # Names come from the server's playlists: refuse any that would leave DIR.
        if relative.is_absolute() or ".." in relative.parts:
            raise fail(f"the playlist names {name!r}, outside its directory")
        path = out.joinpath(*relative.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    master = playlist("")
    save(MASTER, master.encode())
    files = 1
    for variant_uri in _uris(master):
        variant_dir = str(PurePosixPath(variant_uri).parent)
        media_playlist = playlist(variant_uri)
        # Segments are named from the session's root ("720p/seg_00003.ts"); a
        # player resolves them against the variant playlist's own directory.
        local = [
            line.removeprefix(f"{variant_dir}/") if not line.startswith("#") else line
            for line in media_playlist.splitlines()
        ]
        save(variant_uri, ("\n".join(local) + "\n").encode())
        files += 1
        for name in _uris(media_playlist):
            body = _fetch_segment(media, session_id, name, timeout)
            inside = name if name.startswith(f"{variant_dir}/") else f"{variant_dir}/{name}"
            save(inside, body)
            files += 1
    return files


def _fetch_segment(media: Media, session_id: str, name: str, timeout: float) -> bytes:
    from marquee.media.v1 import media_pb2

    request = media_pb2.GetSegmentRequest(session_id=session_id, name=name)

    def read(stub: media_pb2_grpc.MediaServiceStub) -> bytes:
        stream = stub.GetSegment(request, timeout=timeout, metadata=media.metadata)
        return b"".join(m.chunk for m in stream if m.WhichOneof("part") == "chunk")

    return media.call(read)


def _uris(playlist: str) -> list[str]:
    return [
        line.strip() for line in playlist.splitlines() if line.strip() and not line.startswith("#")
    ]
