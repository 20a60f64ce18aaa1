"""Installs demasked_ros: the library (core + engines) and the apps' console scripts.

``pip install -e .`` works without ROS; the ROS node needs the extras in requirements/ros.txt and
the interfaces built by scripts/build_interfaces.sh (or a normal ``colcon build``).
"""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def _requirements(name: str) -> list[str]:
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="demasked_ros",
    version="0.1.0",
    description="Certified semantic segmentation against adversarial patches (DEMASKED SMOOTHING) for ROS 2",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["demasked_ros", "demasked_ros.*"]),
    package_data={"demasked_ros": ["models/*.onnx", "models/*.pt", "models/*.json", "models/*.md",
                                   "py.typed", "apps/evaluate/*.json", "datasets/*.tsv"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/demasked_ros"]),
        ("share/demasked_ros", ["package.xml"]),
        ("share/demasked_ros/launch", glob("launch/*.py")),
        ("share/demasked_ros/config", glob("config/*")),
        ("share/demasked_ros/msg", glob("msg/*.msg")),
    ],
    install_requires=_requirements("core.txt"),
    extras_require={
        "ros": _requirements("ros.txt"),
        "train": _requirements("train.txt"),
        "eval": _requirements("report.txt"),
        "ray": ["ray>=2.9"],
        "dev": _requirements("dev.txt"),
        "gpu": ["onnxruntime-gpu>=1.18"],
    },
    entry_points={
        "console_scripts": [
            "demasked-certify = demasked_ros.apps.certify_cli:main",
            "demasked-node = demasked_ros.apps.node.main:main",
            "demasked-demo = demasked_ros.apps.node.demo:main",
            "demasked-eval = demasked_ros.apps.evaluate.cli:main",
            "demasked-make-bag = demasked_ros.apps.evaluate.make_bag:main",
            "demasked-train = demasked_ros.training.cli:main",
            "demasked-fetch-data = demasked_ros.apps.fetch_cli:main",
            "demasked-attack = demasked_ros.apps.attack_cli:main",
            "demasked-calibrate = demasked_ros.apps.calibrate_cli:main",
        ]
    },
)
