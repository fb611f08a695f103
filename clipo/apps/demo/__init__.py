"""The built-in CPU demo (``clipo train`` with no arguments) and ``clipo experiment``.

``task`` (the last-digit-of-a-sum task and its process checker), ``data`` (its prompt splits, the
``builtin:`` datasets), ``warmstart`` (the tiny model, warm-started by SFT and cached: ``builtin:tiny``),
``run`` (measure, RL, measure again, report) and ``experiment`` (base vs base + CLIPO over seeds).
"""
