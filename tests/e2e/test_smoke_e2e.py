from tests.support.daemon import Daemon
from tests.support.kit import Kit


def test_serves_v1_then_swaps_to_v2(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start()
    d.wait_version("1")
    kit.write(d.desired, "2")
    d.wait_version("2")
