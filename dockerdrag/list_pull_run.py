"""An image-list pull run: moved tags reported, every line resolved, the lines written into
one archive, and what each line resolved to locked.

:meth:`~dockerdrag.pull.Puller.pull_list` checks the list and the outputs, then runs
:func:`run_list_pull`; the steps themselves are :mod:`dockerdrag.list_pull`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from .events import ProgressCallback
from .list_pull import PlannedImage, find_tag_move, locked_image
from .lockfile import Lockfile, write_lockfile
from .ordered_calls import in_order
from .pull_assembly import ArchiveAssembler
from .pull_plan import archive_tags
from .pull_resolve import ImageResolver, ResolveRequest
from .pull_results import ListPullResult


async def run_list_pull(
    plan: Sequence[PlannedImage],
    resolver: ImageResolver,
    assembler: ArchiveAssembler,
    *,
    output: Path,
    output_format: str,
    lock_output: str | Path | None,
    emit: ProgressCallback,
) -> ListPullResult:
    """Pull the checked lines of ``plan`` into one archive at ``output``, then lock them.

    A pinned line's tag that moved is sent to ``emit`` (which delivers the call's own
    events) before anything is resolved; the lock is written to ``lock_output``, if
    given, once the archive is complete. Both outputs must have been checked already.
    """
    looked_up = await in_order(
        [functools.partial(find_tag_move, resolver.client, item) for item in plan],
        resolver.fetcher.concurrency,
    )
    moves = [move for move in looked_up if move is not None]
    for move in moves:
        emit(move)
    resolved = await resolver.resolve_all(
        [
            ResolveRequest(
                item.reference,
                item.wanted,
                archive_tags(item.reference, item.entry.tag),
                item.pin,
            )
            for item in plan
        ]
    )
    results = await assembler.assemble(resolved, output, output_format, emit)
    lock = Lockfile(tuple(locked_image(i, r) for i, r in zip(plan, resolved, strict=True)))
    if lock_output is not None:
        write_lockfile(lock_output, lock)
    return ListPullResult(tuple(results), lock, tuple(moves))


__all__ = ["run_list_pull"]
