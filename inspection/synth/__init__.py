"""The synthetic production line: part photographs with exact defect truth, and tap tests.

>>> from inspection.synth import generate_part
>>> part = generate_part("bracket", index=0, seed=0, defect_class="scratch")
>>> part.image.shape, part.defects[0].attributes["length_mm"] > 0
((256, 256, 3), True)
"""

from inspection.synth.dataset import SynthSummary, synthesize
from inspection.synth.defects import SynthDefect
from inspection.synth.part import SynthPart, generate_part
from inspection.synth.products import PRODUCTS, get_product
from inspection.types import DEFECT_CLASSES

__all__ = [
    "DEFECT_CLASSES",
    "PRODUCTS",
    "SynthDefect",
    "SynthPart",
    "SynthSummary",
    "generate_part",
    "get_product",
    "synthesize",
]
