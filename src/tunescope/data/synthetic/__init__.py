"""The built-in `synthetic-math` source: grade-school word problems in GSM8K's exact format.

Why a generator: it gives an offline, licence-free, reproducible data set whose arithmetic is known
to be right, so a demo or a test can fine-tune and evaluate without the hub. Each answer is a list of
worked steps such as `Natalia sold 48/2 = <<48/2=24>>24 clips in May.` and a final line `#### 72`.

`core` holds the checked step writer, the family registry and the drawing of problems; the family
modules register the kinds of problem when imported.
"""

# The family modules register their families on import, in this order; the order decides the random
# draws and so the generated data, so these imports must stay in this order. `families_two_step`
# registers into its own list, TWO_STEP_FAMILIES, and so leaves FAMILIES alone.
from tunescope.data.synthetic import families_1, families_2, families_3, families_two_step  # noqa: F401
from tunescope.data.synthetic.core import (
    CALC,
    FAMILIES,
    IMPLIED_CONSTANTS,
    TWO_STEP_FAMILIES,
    Family,
    family_set,
    generate_heldout,
    generate_problem,
    generate_problems,
)

__all__ = ["CALC", "FAMILIES", "IMPLIED_CONSTANTS", "TWO_STEP_FAMILIES", "Family", "family_set",
           "generate_heldout", "generate_problem", "generate_problems"]
