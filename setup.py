"""Ships the data folders (targets/, notebooks/) inside the wheel as tango_core/_targets and
tango_core/_notebooks; a source checkout reads them in place."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA_DIRS = {"targets": "_targets", "notebooks": "_notebooks"}


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        for src, dst in DATA_DIRS.items():
            if Path(src).is_dir():
                shutil.copytree(src, Path(self.build_lib) / "tango_core" / dst, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))


setup(cmdclass={"build_py": BuildPyWithData})
