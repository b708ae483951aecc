"""The collector's --metrics address (and BASEPLATE_EVENTS_COLLECTOR_METRICS), as parsed."""
from __future__ import annotations

import pytest

from baseplate_events.collector.service.metrics import parse_address


@pytest.mark.parametrize("port", ["²", "①"])
def test_a_port_of_a_digit_int_cannot_read_says_the_form_it_takes(port: str) -> None:
    """A superscript or circled digit gets the HOST:PORT error, not int()'s own words."""
    with pytest.raises(ValueError) as raised:
        parse_address("127.0.0.1:" + port)
    assert f"expected HOST:PORT (e.g. 127.0.0.1:9102), got '127.0.0.1:{port}'" == str(
        raised.value)
