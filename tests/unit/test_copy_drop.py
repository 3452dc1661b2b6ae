"""The engine removes a layer's resume copy once the sink holds the layer for good.

``Layer.drop_local_copy`` is called after the layer is stored when the sink keeps layers
(``SinkCapabilities.keeps_layers``: a directory), and only then: not for a tar (written
whole or not at all), not when filters rewrote the layer (a rerun filters the download
again), and not for a blob that two layers of the image share (the other may still need
it). Real sinks and a real filter; the source is in memory.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from occystrap.copy import copy_image
from occystrap.filters.base import Filter
from occystrap.filters.normalize_timestamps import NormalizeTimestamps
from occystrap.filters.options import NormalizeOptions
from occystrap.image import Image, Layer
from occystrap.model.config import ImageConfig
from occystrap.model.descriptor import Descriptor
from occystrap.model.digest import Digest
from occystrap.model.media_types import MediaType
from occystrap.transports.base import RunContext, Sink
from occystrap.transports.directory.options import DirSinkOptions
from occystrap.transports.directory.sink import DirectorySink
from occystrap.transports.dockerarchive.options import TarSinkOptions
from occystrap.transports.dockerarchive.sink import TarSink


def _layer_tar(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = f"{name}\n".encode()
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 1_000_000
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _image(names: list[str], dropped: list[int]) -> Image:
    """Layers of one file each (the same name: the same blob); dropping one records its
    index in ``dropped``."""
    plain = {name: _layer_tar(name) for name in names}
    packed = {name: gzip.compress(data, mtime=0) for name, data in plain.items()}
    config = ImageConfig.parse(
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {},
                "rootfs": {
                    "type": "layers",
                    "diff_ids": [str(Digest.of_bytes(plain[n])) for n in names],
                },
            }
        ).encode(),
        "config",
    )

    def opener(data: bytes) -> Callable[[], contextlib.AbstractContextManager[BinaryIO]]:
        @contextlib.contextmanager
        def open_() -> Iterator[BinaryIO]:
            yield io.BytesIO(data)

        return open_

    layers = tuple(
        Layer(
            index=i,
            media_type=MediaType.OCI_LAYER_GZIP,
            descriptor=Descriptor(
                MediaType.OCI_LAYER_GZIP, Digest.of_bytes(packed[n]), len(packed[n])
            ),
            diff_id=Digest.of_bytes(plain[n]),
            opener=opener(packed[n]),
            local_copy=lambda: None,
            drop_local_copy=lambda i=i: dropped.append(i),  # type: ignore[misc]
        )
        for i, n in enumerate(names)
    )
    return Image(name="lab/drop", tag="v1", config=config, layers=layers)


@pytest.mark.parametrize(
    ("sink_kind", "filtered", "expected"),
    [
        ("dir", False, [1]),  # layers 0 and 2 share a blob
        ("tar", False, []),
        ("dir", True, []),
    ],
)
def test_copies_dropped_only_where_the_sink_keeps_the_layer(
    sink_kind: str, filtered: bool, expected: list[int], tmp_path: Path
) -> None:
    dropped: list[int] = []
    image = _image(["a", "b", "a"], dropped)
    ctx = RunContext(jobs=1)
    sink: Sink
    if sink_kind == "dir":
        sink = DirectorySink(str(tmp_path / "dir"), DirSinkOptions(), ctx)
    else:
        sink = TarSink(str(tmp_path / "image.tar"), TarSinkOptions(), ctx)
    filters: list[Filter] = [NormalizeTimestamps(NormalizeOptions())] if filtered else []
    copy_image(image, sink, filters, ctx)
    assert sorted(dropped) == expected
    if sink_kind == "dir" and not filtered:  # the layers are there: a rerun skips them
        for layer in image.layers:
            assert layer.diff_id is not None
            assert (tmp_path / "dir" / layer.diff_id.encoded / "layer.tar").is_file()
