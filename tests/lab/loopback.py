"""Small fault-injecting servers on loopback share one accept loop (:func:`accept_each`)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def accept_each(server: socket.socket, handle: Callable[[socket.socket], None]) -> threading.Thread:
    """Hand every connection ``server`` accepts to ``handle``, in a daemon thread, until the
    server socket is closed. ``handle`` runs in that thread: it starts its own threads when a
    connection needs to be served while others arrive."""

    def loop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            handle(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread
