"""Olive user script: calibration feeds saved by ``peer_builders.olive_*`` as one ``.npz``.

Olive's documented way to bring your own data is a ``user_script`` whose functions are registered
with ``olive.data.registry.Registry``; the workflow's ``data_configs`` then name them. Keys in the
``.npz`` are ``"<index>/<input name>"``; each item is one feed dict, already batched, so the
dataloader must not add a batch axis (``no_auto_batch_dataloader``).
"""

from __future__ import annotations

import numpy as np
from olive.data.registry import Registry


class _Feeds:
    def __init__(self, path: str) -> None:
        data = np.load(path)
        items: dict[int, dict[str, np.ndarray]] = {}
        for key in data.files:
            i, name = key.split("/", 1)
            items.setdefault(int(i), {})[name] = data[key]
        self.items = [items[i] for i in sorted(items)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i], 0


@Registry.register_dataset()
def workbench_feeds(data_path: str, **kwargs):
    return _Feeds(data_path)


def save_feeds(path: str, feeds: list[dict[str, np.ndarray]]) -> None:
    np.savez(path, **{f"{i}/{k}": v for i, f in enumerate(feeds) for k, v in f.items()})
