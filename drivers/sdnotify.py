"""systemd's notify protocol: READY=1 at start and WATCHDOG=1 from the loop.

With no NOTIFY_SOCKET (a PC, a test) every call does nothing.
"""
import os
import socket


class Notifier:
    def __init__(self, env=None):
        env = os.environ if env is None else env
        self.address = env.get("NOTIFY_SOCKET")
        usec = env.get("WATCHDOG_USEC")
        self._interval = int(usec) // 2000 if usec and usec.isdigit() else 0
        self.sock = None
        if self.address:
            if self.address.startswith("@"):
                self.address = "\0" + self.address[1:]
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def _send(self, text):
        if self.sock is None:
            return
        try:
            self.sock.sendto(text.encode(), self.address)
        except OSError:
            pass

    def interval_ms(self):
        """Ping at half of WatchdogSec, as systemd recommends."""
        return self._interval

    def ready(self):
        self._send("READY=1")

    def ping(self):
        self._send("WATCHDOG=1")

    def status(self, text):
        self._send("STATUS=" + text)
