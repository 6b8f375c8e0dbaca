"""The engine tests serve models trained on the small synthetic shop of the recommend tests."""

from tests.recommend.conftest import one_torch_thread, shop, small_settings  # noqa: F401  (fixtures)
