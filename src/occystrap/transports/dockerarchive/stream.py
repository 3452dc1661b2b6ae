"""One-pass reading of a docker-save archive from any binary stream.

Used for ``tar://-`` (stdin), whole-file gzip/zstd archives and, by the daemon source, for
the body of ``GET /images/{name}/get``::

    with ArchiveStream(reader, what="tar://-", temp_dir=ctx.temp_dir) as archive:
        plan = archive.plan(image=None, index=None)     # or archive.plan_expected(Expect(...))
        image = image_from_plan(plan, archive.opener, "tar://-", sequential=True)
        ...                                              # open layers in index order, one at a time
        archive.finish()                                 # read the rest, so the producer can finish

Members that arrive before anyone knows whether they are needed are *held*: small ones in
memory (32 MiB budget in all), the rest spooled under ``temp_dir``. Once the plan is known,
members nobody needs are released or skipped, and a layer that arrives while it is being
asked for streams straight through. With an :class:`~.expect.Expect` (``plan_expected``)
the plan is ready as soon as the config passes, so layers can stream before manifest.json.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import closing, contextmanager
from functools import partial
from typing import BinaryIO, cast

from ...blobio.readers import ChainReader, Reader, read_full
from ...closing import Closing
from ...errors import MalformedInput, OccystrapError
from ...events import Stats
from ...image import Opener
from ...model.digest import Digest
from ...model.jsonfile import MAX_JSON_BYTES
from ...tario.entry import BodyReader, TarEntry
from ...tario.reader import iter_entries
from .checks import CountingReader, checked
from .expect import Expect, expected_plan, refine
from .held import HEAD, Held, HeldMembers
from .members import Member, MemberTable, NeedMore, member_from_info
from .reader import LayerRef, Plan, build_plan

log = logging.getLogger(__name__)


class ArchiveStream(Closing):
    """A docker-save archive read once, front to back (see the module docstring)."""

    def __init__(
        self, stream: Reader, *, what: str, temp_dir: str | None = None, stats: Stats | None = None
    ) -> None:
        self.what = what
        self._stats = stats
        self.complete = False
        self._temp_dir = temp_dir
        self._table = MemberTable(what)
        self._entries: Iterator[TarEntry] = iter_entries(stream, what=what)
        self._held = HeldMembers(temp_dir)
        self._plan: Plan | None = None
        self._expect: Expect | None = None
        self._pending: set[int] = set()
        self._busy = False

    # -- Contents (what build_plan asks) -----------------------------------------------

    def resolve(self, path: str, what: str = "path") -> Member | None:
        return self._table.resolve(path, what)

    def read_small(self, member: Member, what: str) -> bytes:
        held = self._held.get(member.name)
        if held is None:
            raise MalformedInput(f"{what}: member {member.name!r} was passed over")
        if held.data is not None:
            return held.data
        if member.size > MAX_JSON_BYTES:
            raise MalformedInput(f"{what} is {member.size} bytes, too big for a JSON document")
        with closing(held.open()) as f:
            return read_full(f, member.size)

    def head(self, member: Member) -> bytes | None:
        held = self._held.get(member.name)
        return held.head if held is not None else None

    def digest(self, member: Member) -> Digest | None:
        held = self._held.get(member.name)
        return held.digest if held is not None else None

    # -- planning ----------------------------------------------------------------------

    def plan(self, image: str | None = None, index: int | None = None) -> Plan:
        """Read until the image picked by ``image``/``index`` is known (manifest.json seen)."""
        while True:
            try:
                plan = build_plan(self, image, index)
                break
            except NeedMore:
                self._hold_next()
        self._adopt(plan)
        return plan

    def plan_expected(self, expect: Expect) -> Plan:
        """Read only until the config named by ``expect`` has passed; layers are found later.
        On failure (e.g. no such config) ``plan()`` can still be asked."""
        self._expect = expect
        try:
            while True:
                try:
                    plan = expected_plan(self, expect)
                    break
                except NeedMore:
                    self._hold_next()
        except BaseException:
            self._expect = None  # plan() may still be asked, from what is held
            raise
        self._adopt(plan)
        manifest_json = self._held.get("manifest.json")
        if manifest_json is not None:
            self._refine(manifest_json)
        return plan

    def _refine(self, held: Held) -> None:
        assert self._plan is not None and self._expect is not None
        with closing(held.open()) as f:
            raw = read_full(f, min(held.member.size, MAX_JSON_BYTES))
        refine(self._plan, self._expect, raw, self.what)

    def _adopt(self, plan: Plan) -> None:
        self._plan = plan
        self._pending = set(range(len(plan.layers)))
        self._gc()

    # -- layers ------------------------------------------------------------------------

    def opener(self, ref: LayerRef) -> Opener:
        """The ``Layer.opener`` for ``ref`` (pass to ``image_from_plan``)."""
        return partial(self.open_layer, ref.index)

    @contextmanager
    def open_layer(self, index: int) -> Iterator[BinaryIO]:
        """The stored bytes of layer ``index``, verified. Layers are opened in index order
        (a lower layer not opened before a higher one is given up), one at a time."""
        if self._plan is None:
            raise OccystrapError("ArchiveStream.open_layer called before plan()")
        if self._busy:
            raise OccystrapError(f"layers of {self.what} must be read one at a time")
        ref = self._plan.layers[index]
        if index not in self._pending and self._find_held(ref) is None:
            raise OccystrapError(f"layer {index} of {self.what} was read already")
        self._pending -= {j for j in self._pending if j < index}
        self._busy = True
        try:
            held, live = self._locate(ref)
            self._pending.discard(index)
            if live is not None:
                size = live.remaining
                head = read_full(live, HEAD)
                reader: Reader = ChainReader(head, cast(Reader, live))
            else:
                assert held is not None
                reader, head, size = held.open(), held.head, held.member.size
            counted = CountingReader(reader)
            try:
                with checked(counted, head, ref, self.what, size) as stream:
                    yield stream
            finally:
                counted.close()
                if self._stats is not None:
                    self._stats.add(bytes_read=counted.count)
        finally:
            self._busy = False
            self._gc()

    def _locate(self, ref: LayerRef) -> tuple[Held | None, BodyReader | None]:
        while True:
            held = self._find_held(ref)
            if held is not None:
                return held, None
            entry = self._next_entry()
            if entry is None:
                raise MalformedInput(
                    f"layer {ref.index} ({ref.paths[0]}) is missing from {self.what}"
                )
            member = self._register(entry)
            if member.kind != "file":
                continue
            if self._is_for(ref, member) and not self._needed_elsewhere(member, ref.index):
                return None, entry.body
            if self._keep(member):
                self._hold(member, entry.body)

    def _find_held(self, ref: LayerRef) -> Held | None:
        for path in ref.paths:
            member = self.resolve(path, f"layer {ref.index}")
            held = self._held.get(member.name) if member is not None else None
            if held is not None:
                return held
        return self._held.with_digest(ref.diff_id) if ref.match_content else None

    def _is_for(self, ref: LayerRef, member: Member) -> bool:
        return any(self.resolve(p, f"layer {ref.index}") is member for p in ref.paths)

    def _needed_elsewhere(self, member: Member, index: int) -> bool:
        assert self._plan is not None
        return any(j != index and self._is_for(self._plan.layers[j], member) for j in self._pending)

    def _dangling(self) -> bool:
        """Some pending layer is not found yet, so any member may turn out to be it."""
        assert self._plan is not None
        return any(not self._seen(self._plan.layers[j]) for j in self._pending)

    def _seen(self, ref: LayerRef) -> bool:
        paths = ref.paths
        return self._find_held(ref) is not None or any(self.resolve(p) is not None for p in paths)

    def _keep(self, member: Member) -> bool:
        assert self._plan is not None
        if self._expect is not None and member.name == "manifest.json":
            return True
        layers = self._plan.layers
        return self._dangling() or any(self._is_for(layers[j], member) for j in self._pending)

    def _gc(self) -> None:
        if self._plan is None or self._dangling():
            return
        found = [self._find_held(self._plan.layers[j]) for j in self._pending]
        keep = {held.member.name for held in found if held is not None}
        for name in self._held.names():
            if name not in keep:
                self._held.release(name)

    # -- the tar stream ----------------------------------------------------------------

    def _next_entry(self) -> TarEntry | None:
        if self.complete:
            return None
        entry = next(self._entries, None)
        if entry is None:
            self.complete = True
        return entry

    def _register(self, entry: TarEntry) -> Member:
        member = member_from_info(entry.info, self.what)
        self._held.release(member.name)  # a later member of the same name replaces the earlier one
        self._table.add(member)
        return member

    def _hold_next(self) -> None:
        if self.complete:
            raise MalformedInput(f"{self.what}: unexpected end of archive")
        entry = self._next_entry()
        if entry is None:
            return
        member = self._register(entry)
        if member.kind == "file":
            self._hold(member, entry.body)

    def _hold(self, member: Member, body: BodyReader) -> Held:
        held = self._held.hold(member, body)
        if self._expect is not None and self._plan is not None and member.name == "manifest.json":
            self._refine(held)
        return held

    def finish(self) -> None:
        """Read the rest of the stream (a producer such as ``docker save`` may wait for it)."""
        try:
            while self._next_entry() is not None:
                pass
        except OccystrapError as e:
            log.warning("after the image, %s ended badly: %s", self.what, e)

    def close(self) -> None:
        self._held.close()
