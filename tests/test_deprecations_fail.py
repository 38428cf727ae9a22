"""The suite turns deprecations announced by the libraries tunescope builds on into errors
(pyproject.toml, [tool.pytest.ini_options] filterwarnings), so a coming removal fails a test on the
day it is announced; the command line keeps them from users."""

from __future__ import annotations

import warnings

import pytest


@pytest.mark.parametrize("module", ["transformers.modeling_utils", "peft.tuners.lora.layer",
                                    "accelerate.utils", "torch.nn.modules.module",
                                    "tunescope.evaluate.runner"])
@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning])
def test_a_deprecation_attributed_to_a_dependency_or_to_our_call_is_an_error(module, category):
    with pytest.raises(category):
        warnings.warn_explicit("going away", category, "file.py", 1, module=module)


def test_other_warnings_stay_warnings():
    with pytest.warns(DeprecationWarning):
        warnings.warn_explicit("going away", DeprecationWarning, "file.py", 1, module="some_other_package")
    with pytest.warns(UserWarning):
        warnings.warn_explicit("a note", UserWarning, "file.py", 1, module="transformers.modeling_utils")
