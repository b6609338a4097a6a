"""Where a validation problem is, as the error messages print it."""

import pytest

from terminal.core.errors import field_path


@pytest.mark.parametrize(
    ("loc", "text"),
    [
        ((), ""),
        (("ota", "window", "timezone"), "ota.window.timezone"),
        (("payloads", 0, "sha256"), "payloads[0].sha256"),
        (("files", 1, "[key]"), "files[1] (key)"),
        (("meta", "not-an-identifier"), "meta['not-an-identifier']"),
        ((0,), "[0]"),
    ],
)
def test_field_path(loc: tuple[int | str, ...], text: str) -> None:
    assert field_path(loc) == text
