import importlib

import tango_core


def test_every_public_name_resolves():
    for name in tango_core.__all__:
        assert callable(getattr(tango_core, name)) or isinstance(getattr(tango_core, name), type), name


def test_import_is_light():
    # the package itself imports no heavy backend until a name is used
    mod = importlib.reload(tango_core)
    assert mod.__version__
