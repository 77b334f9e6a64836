"""The `imram` package: python/imram/ plus the module compiled in the project's CMake build tree.

The module links the same library as the `imram` binary and is built by CMake, not by setuptools:
this script builds the CMake target `imram_python` in the build tree (IMRAM_BUILD_DIR, by
default the repository's build/, configured first when missing) and packages what it made.
`./run python` calls it; the README gives the one pip command for an environment of your own.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def project_version():
    text = (ROOT / "CMakeLists.txt").read_text()
    return re.search(r"project\(imram VERSION ([0-9.]+)", text).group(1)


class CMakeBuiltExtension(build_ext):
    def build_extension(self, ext):
        build_dir = Path(os.environ.get("IMRAM_BUILD_DIR", ROOT / "build")).resolve()
        if not (build_dir / "CMakeCache.txt").exists():
            subprocess.check_call(["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                                   f"-DPython_EXECUTABLE={sys.executable}"])
        jobs = os.environ.get("IMRAM_JOBS", str(os.cpu_count() or 1))
        subprocess.check_call(["cmake", "--build", str(build_dir), "--target", "imram_python", "-j", jobs])
        built = sorted((build_dir / "python" / "imram").glob("_imram*.so"))
        if not built:
            sys.exit(f"{build_dir}: no _imram module after building imram_python (is pybind11-dev installed?)")
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built[-1], target)


setup(
    name="imram",
    version=project_version(),
    description="IMRAM cross-modal image-text retrieval: scoring, evaluation and search",
    packages=["imram"],
    package_data={"imram": ["py.typed", "*.pyi"]},
    ext_modules=[Extension("imram._imram", sources=[])],
    cmdclass={"build_ext": CMakeBuiltExtension},
    python_requires=">=3.9",
    install_requires=["numpy"],
    zip_safe=False,
)
