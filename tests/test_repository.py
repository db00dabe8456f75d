"""Repository-level facts a course needs: licenses stated, no placeholder launch buttons."""
from __future__ import annotations

from urllib.parse import urlparse

import tomllib
import yaml
from _book import ROOT


def test_code_and_text_licenses_exist_and_the_front_page_states_both():
    code = (ROOT / "LICENSE").read_text(encoding="utf-8")
    text = (ROOT / "LICENSE-TEXT").read_text(encoding="utf-8")
    assert code.startswith("MIT License")
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == {"text": "MIT"}
    assert "CC BY 4.0" in text and "creativecommons.org/licenses/by/4.0" in text
    front = (ROOT / "intro.md").read_text(encoding="utf-8")
    assert "MIT License" in front and "CC BY 4.0" in front


def test_launch_buttons_point_at_real_services_not_placeholders():
    """A launch button for a hub that does not exist sends readers to an error page: the JupyterHub
    button appears only when an instructor configures a hub."""
    buttons = yaml.safe_load((ROOT / "_config.yml").read_text())["launch_buttons"]
    urls = {k: v for k, v in buttons.items() if k.endswith("_url")}
    assert "colab_url" in urls and "binderhub_url" in urls
    for key, url in urls.items():
        host = urlparse(url).hostname or ""
        assert not (host.startswith("example.") or ".example." in host or host.endswith(".example")), \
            f"{key} is a placeholder ({url}); remove it or set a real one"
