"""An image of many tiny layers, pushed into a registry with a few uploads at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from . import pusher
from .images import PushedImage, build_image, push_built, text_layer

PUSH_THREADS = 8


def push_many_layer_image(
    registry: pusher.RegistryLike, repo: str, count: int, tag: str = "latest"
) -> PushedImage:
    """An image of ``count`` distinct one-file layers (``f<i>`` holding ``i``)."""
    layers = [text_layer(f"f{i}", f"{i}\n") for i in range(count)]
    image = build_image(layers)
    with ThreadPoolExecutor(PUSH_THREADS) as uploads:
        list(uploads.map(lambda built: pusher.push_blob(registry, repo, built.blob), layers))
    return push_built(registry, repo, tag, image)  # the layers exist: only config + manifest
