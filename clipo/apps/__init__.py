"""Entry points: the ``clipo`` CLI, specs turned into objects, ``clipo eval``, the CPU demo and
``clipo experiment``, and ``clipo report``.

Layer: the top. Nothing else in clipo imports it (except the lazy ``clipo`` facade).
"""
