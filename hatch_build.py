"""Puts the torchvision guard's ``.pth`` file at the root of site-packages.

hatchling's ``force-include`` does not reach editable wheels, so a build hook adds the file to
both (see ``hand4dgs_ns/_torchvision_guard.py`` for why the guard exists).
"""

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PTH_SOURCE = "hand4dgs_ns/_torchvision_guard.pth"
PTH_TARGET = "hand4dgs_ns_torchvision_guard.pth"


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        key = "force_include_editable" if version == "editable" else "force_include"
        build_data.setdefault(key, {})[PTH_SOURCE] = PTH_TARGET
