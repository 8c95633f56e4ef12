"""``python -m ntm_repro``: the same as the ``ntm-repro`` command."""

from ntm_repro.cli import main

main()
