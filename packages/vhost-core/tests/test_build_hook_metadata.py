"""The build hook's Requires-External: what it reads from a pyproject and where it writes."""

from __future__ import annotations

from vhost_user_core_build import system_libraries, with_requires_external

METADATA = "Metadata-Version: 2.5\nName: x\nRequires-Dist: y\n\n# x\n\nRequires-External: prose\n"


def test_libraries_come_from_the_extensions_then_the_declared_list() -> None:
    pyproject = {
        "tool": {
            "hatch": {"build": {"targets": {"wheel": {"hooks": {"custom": {"extensions": [
                "_plain", {"name": "_pw", "pkg-config": ["libpipewire-0.3"]}]}}}}}},
            "vhost-device": {"system-libraries": ["alsa", "libpipewire-0.3"]},
        }
    }  # fmt: skip
    assert system_libraries(pyproject) == ["libpipewire-0.3", "alsa"]
    assert system_libraries({}) == []


def test_the_field_goes_among_the_headers_once_and_the_body_is_untouched() -> None:
    once = with_requires_external(METADATA, ["libpipewire-0.3", "alsa"])
    headers, body = once.split("\n\n", 1)
    assert headers.endswith("Requires-External: libpipewire-0.3\nRequires-External: alsa")
    assert body == "# x\n\nRequires-External: prose\n"
    assert with_requires_external(once, ["libpipewire-0.3", "alsa"]) == once
