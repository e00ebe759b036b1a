# The first code cell of every notebook (notebooks/_make.py puts it where a source says
# `# %% [install EXTRAS]`, with {extras} replaced): a notebook must install tango before it can
# import anything of it.  The cell is everything below the next line.
# %%
# On Colab or a fresh kernel: install tango if it is missing, and turn on Colab's widget manager
# (the one extra call Colab needs for custom widgets).  PyPI's "tango" is a different project, so
# this installs from TANGO_PIP_SPEC (a git URL or a path) or a tango wheel uploaded next to this
# notebook (`pip wheel --no-deps -w dist .` in a checkout makes one).
import glob
import importlib.util
import os
import sys

if importlib.util.find_spec("tango_core") is None:
    wheels = sorted(glob.glob("tango-*.whl") + glob.glob("/content/tango-*.whl"))
    spec = os.environ.get("TANGO_PIP_SPEC") or (f"{wheels[-1]}[{extras}]" if wheels else "")
    if not spec:
        raise RuntimeError("tango is not installed in this kernel: upload a tango wheel (tango-*.whl) next to "
                           "this notebook or set TANGO_PIP_SPEC, e.g. 'git+https://<host>/<you>/tango.git#egg="
                           "tango[{extras}]', then run this cell again")
    %pip install -q "{spec}"
if "google.colab" in sys.modules:
    from google.colab import output

    output.enable_custom_widget_manager()
