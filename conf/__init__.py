# Hydra configs, installed as the package ntm_repro.conf (pyproject.toml: package-dir).
