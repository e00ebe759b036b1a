import importlib

import tango_core


def test_every_public_name_resolves():
    import tango_core.deploy  # noqa: F401  importing subpackages must not shadow a public name
    import tango_core.export  # noqa: F401

    for name in tango_core.__all__:
        assert callable(getattr(tango_core, name)), name


def test_import_is_light():
    mod = importlib.reload(tango_core)
    assert mod.__version__
