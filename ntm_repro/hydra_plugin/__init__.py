"""Installed as ``hydra_plugins.ntm_repro``: where Hydra finds ntm-repro's launcher (Hydra
loads launchers only from the ``hydra_plugins`` namespace, by the name of the module that
defines them). The launcher's code lives in :mod:`ntm_repro.launcher`."""

from ntm_repro import launcher


class PopulationLauncher(launcher.PopulationLauncher):
    __doc__ = launcher.PopulationLauncher.__doc__
