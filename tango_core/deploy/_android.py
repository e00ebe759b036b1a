"""The Android Studio project: the TFLite model and its metadata as assets, the pre- and
post-processing in Kotlin (the same steps as the Python packages), a one-screen app."""

from __future__ import annotations

from ..errors import ConfigError
from ._package import Package
from ._table import package

#: versions the generated project builds with (Android Gradle Plugin, Kotlin, Gradle, libraries)
TOOLCHAIN = {"agp": "8.7.3", "kotlin": "2.1.0", "gradle": "8.9", "compile_sdk": 35, "min_sdk": 26,
             "appcompat": "1.7.0", "activity": "1.9.3", "litert": "1.4.0"}
ASSETS = "android/app/src/main/assets"


@package("android")
def build_android(pkg: Package) -> None:
    meta = pkg.meta
    if meta["task"] == "segmentation":
        raise ConfigError(str(pkg.meta_path), "task", "the Android app shows classification and detection",
                          "deploy a segmentation model to a Python target (server, jetson...)")
    model = pkg.meta_path.parent / meta["files"]["model"]
    android_package = pkg.fields["android_package"]
    pkg.values["android"] = dict(
        TOOLCHAIN, package=android_package, app_name=pkg.name, app_label=f"tango {pkg.name}",
        hint=f"Pick an image: {meta['task']} with {meta.get('model') or 'the model'} "
             f"({len(meta.get('class_names') or [])} classes)")
    pkg.values.update(model_asset="model.tflite", meta_asset="model.tango.json")
    pkg.write(f"{ASSETS}/model.tflite", model.read_bytes())
    pkg.write(f"{ASSETS}/model.tango.json", pkg.meta_path.read_bytes())
    package_path = android_package.replace(".", "/")
    for relative, template in pkg.kind.templates.items():
        pkg.render(template, relative.format(package_path=package_path))
    pkg.values["extra_files"].update({
        "android/": "Android Studio project (Kotlin): open it, then Run on a phone",
        f"{ASSETS}/": "the TFLite model and its metadata, read by TangoModel.kt",
    })
    pkg.values["device_notes"] = _notes(pkg, package_path)


def _notes(pkg: Package, package_path: str) -> str:
    tc = pkg.values["android"]
    return "\n".join([
        "## Android app",
        "",
        f"`android/` is an Android Studio project (Kotlin, Android Gradle Plugin {tc['agp']}, Kotlin {tc['kotlin']},",
        f"LiteRT {tc['litert']} with the GPU delegate where the phone supports it, else the CPU).",
        "",
        "1. Open `android/` in Android Studio (Koala or newer); it downloads Gradle "
        f"{tc['gradle']} and the libraries.",
        "2. Run on a phone with USB debugging on (minSdk "
        f"{tc['min_sdk']}), or build an APK: `gradle wrapper && ./gradlew assembleDebug`.",
        "3. Pick an image: the app shows the top classes (or the boxes) and the inference time.",
        "",
        f"The pre- and post-processing are in `app/src/main/java/{package_path}/Processing.kt`, reading the",
        "export's metadata (`assets/model.tango.json`): the same steps as the Python packages.",
    ])
