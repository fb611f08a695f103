"""Integrations with other training libraries: CLIPO inside TRL's ``GRPOTrainer`` (:mod:`clipo.integrations.trl`).

Layer: above ``core``, ``rewards``, ``data``, ``models``, ``rollout`` and ``training``; below ``apps``. This
package's ``__init__`` imports nothing, so ``import clipo`` never imports an optional library such as TRL;
``from clipo.integrations.trl import CLIPOGRPOTrainer`` does (``pip install 'clipo[trl]'``).
"""
