"""Scope setup, as ``mmaction.utils.setup_env`` does for mmaction2."""
import datetime

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every clcr_mm and mmaction2 module so registries are filled.

    Args:
        init_default_scope (bool): Whether to make ``clcr_mm`` the current
            default scope, so bare type names resolve in our registries
            first and then in mmaction2's and mmengine's. Defaults to True.
    """
    import mmaction.utils
    mmaction.utils.register_all_modules(init_default_scope=False)
    import clcr_mm.datasets  # noqa: F401
    import clcr_mm.engine  # noqa: F401
    import clcr_mm.evaluation  # noqa: F401
    import clcr_mm.models  # noqa: F401
    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None or current.scope_name != 'clcr_mm':
        DefaultScope.get_instance(
            f'clcr_mm-{datetime.datetime.now()}', scope_name='clcr_mm')
