"""Command-line verbs that live in their own modules.

Each module in ``EXTRA`` has ``register(sub)``, which adds its sub-parsers to ``workbench``'s
(``sub`` is argparse's sub-parser action) and sets ``fn`` on each. Modules import heavy runtimes
lazily, inside the command functions, so ``workbench --help`` stays fast.
"""

from __future__ import annotations

EXTRA: tuple[str, ...] = ("workbench.commands.bundle", "workbench.commands.tuning", "workbench.commands.convert",
                         "workbench.commands.profile")
