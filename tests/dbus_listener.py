# ruff: noqa: F722, F821, N802  (dbus-fast reads D-Bus signatures from string annotations)
"""A minimal org.freedesktop.Notifications server for tests (run as a subprocess on a private session bus).

Usage: python dbus_listener.py OUT_JSONL. Each Notify call appends {app_name, summary, body, urgency} to
OUT_JSONL; "ready" is printed on stdout once the bus name is owned.
"""

import asyncio
import json
import sys

from dbus_fast import BusType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, method


class Notifications(ServiceInterface):
    def __init__(self, out: str) -> None:
        super().__init__("org.freedesktop.Notifications")
        self.out = out
        self.next_id = 1

    @method()
    def Notify(  # noqa: N802 - D-Bus method names are CamelCase
        self,
        app_name: "s",  # noqa: F821 - dbus-fast reads signatures from annotations
        replaces_id: "u",  # noqa: F821
        app_icon: "s",  # noqa: F821
        summary: "s",  # noqa: F821
        body: "s",  # noqa: F821
        actions: "as",  # noqa: F821
        hints: "a{sv}",  # noqa: F821
        expire_timeout: "i",  # noqa: F821
    ) -> "u":  # noqa: F821
        urgency = hints.get("urgency")
        rec = {
            "app_name": app_name,
            "summary": summary,
            "body": body,
            "urgency": urgency.value if isinstance(urgency, Variant) else None,
        }
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        self.next_id += 1
        return self.next_id - 1

    @method()
    def GetCapabilities(self) -> "as":  # noqa: N802, F821
        return ["body"]

    @method()
    def GetServerInformation(self) -> "ssss":  # noqa: N802, F821
        return ["oaim-test-listener", "oaim", "1.0", "1.2"]

    @method()
    def CloseNotification(self, id: "u"):  # noqa: N802, F821, A002
        pass


async def main(out: str) -> None:
    bus = await MessageBus(bus_type=BusType.SESSION).connect()
    bus.export("/org/freedesktop/Notifications", Notifications(out))
    await bus.request_name("org.freedesktop.Notifications")
    print("ready", flush=True)
    await bus.wait_for_disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
