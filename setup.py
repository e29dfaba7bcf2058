"""Package layout: the folders plugins/ and dashboards/ install under namespaced import names."""

from setuptools import find_packages, setup

FOLDERS = {"automl": "automl", "automl_plugins": "plugins", "automl_tui": "dashboards"}


def packages():
    found = []
    for name, folder in FOLDERS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_packages(where=folder)]
    return found


setup(packages=packages(), package_dir=FOLDERS)
