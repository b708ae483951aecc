"""The collector reads keys from a publisher's INI file: text it cannot decode is a
ConfigError naming the file, never a traceback."""
from __future__ import annotations

from pathlib import Path

import pytest

from baseplate_events.collector.service.settings import keys_from_publisher_config
from baseplate_events.errors import ConfigError


def test_an_ini_file_that_is_not_utf8_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """A publisher config in another encoding: 'publisher_config: PATH is not UTF-8 text'."""
    path = tmp_path / "publisher.ini"
    path.write_bytes(b"\xff\xfe[event-publisher:v2]\n")
    with pytest.raises(ConfigError) as caught:
        keys_from_publisher_config(str(path))
    assert (f"publisher_config: {path} is not UTF-8 text (byte 0xff at offset 0); save it "
            f"as UTF-8") == str(caught.value)


def test_a_secret_file_that_is_not_utf8_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """key.secret_file holding raw bytes, not base64 text: an error naming the key and file."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"\x80\x81binary")
    path = tmp_path / "publisher.ini"
    path.write_text(f"[event-publisher:v2]\nkey.name = demo\nkey.secret_file = {secret}\n")
    with pytest.raises(ConfigError) as caught:
        keys_from_publisher_config(str(path))
    assert (f"[event-publisher:v2] key.secret_file: {secret} is not UTF-8 text (byte 0x80 at "
            f"offset 0); it holds the key in base64") == str(caught.value)
