"""Project-local code of ``projects/bottleneck_exchange``.

Importing this package (``custom_imports=dict(imports=['clcr_mm',
'clcr_bottleneck'])``) registers :class:`BottleneckExchange` in mmaction2's
``MODELS`` registry.
"""
import clcr_mm  # noqa: F401  (CLCR parts; patches the mmaction2 1.2.0 wheel)

from .bottleneck_exchange import BottleneckExchange

__all__ = ['BottleneckExchange']
