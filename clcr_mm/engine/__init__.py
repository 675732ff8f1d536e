"""Hooks and the optimizer-wrapper constructor of clcr_mm."""
from . import hooks  # noqa: F401
from .optim_wrapper_constructor import (  # noqa: F401
    MergedParamGroupsOptimWrapperConstructor, merge_param_groups)
