"""``manage.py demo``: everything the demo needs, from a fresh clone, in one command."""

import os
import secrets
import signal
import socket
import struct
import sys
import threading
import zlib

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.test.utils import override_settings

from natsstorage import close_connections
from natsstorage.testing import LOOPBACK, NatsServer

USERNAME = "admin"
NATS_PORT = 4222  # NATS's own default, so that the NATS tools and the commands find it too, when it is free
# What a site's server should run with (docs/durability.md): an upload the demo said it kept survives a power
# loss. The cost, an fsync per chunk, is not felt at a demo's pace.
SYNC_INTERVAL = "always"
WATCH_EVERY = 1.0  # seconds between looks at whether the demo's nats-server is still running


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def sample_png(width: int = 120, height: int = 80) -> bytes:
    """A small gradient, so the list shows a thumbnail without needing Pillow."""
    rows = b"".join(
        b"\x00" + bytes(value for x in range(width) for value in (x * 255 // width, y * 255 // height, 180))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class Keeper(threading.Thread):
    """Starts the demo's nats-server again when it dies (killed, crashed), at the same URL, and says so: the
    site's connection finds it again by itself. A restart that fails says how to start it by hand."""

    def __init__(self, server: NatsServer, say) -> None:
        super().__init__(name="nats-server keeper", daemon=True)
        self.server, self.say = server, say
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(WATCH_EVERY):
            process = self.server.process
            if process is None or process.poll() is None:  # poll() also reaps a dead one: no zombie
                continue
            self.say(f"The nats-server (pid {process.pid}) exited with {process.returncode}; starting it again.")
            try:
                self.server.start()
            except (OSError, RuntimeError, TimeoutError) as error:
                config = self.server.store_dir / "nats-server.conf"
                self.say(f"It did not start ({error}). Start it by hand: nats-server -c {config}")
                return
            self.say(f"Started nats-server (pid {self.server.process.pid}) {self.server.url} again.")

    def stop(self) -> None:
        self.stopping.set()
        self.join()


class Command(BaseCommand):
    help = (
        "Run the demo: start a nats-server with JetStream (unless NATS_URL is set), migrate, "
        "create the admin login, and serve on 127.0.0.1."
    )

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000", help="where to serve (127.0.0.1:8000)")

    def handle(self, *args, addrport: str, **options):
        server = keeper = None
        if not os.environ.get("NATS_URL"):
            port = NATS_PORT if port_is_free(NATS_PORT) else None  # else any free one: say which below
            server = NatsServer(store_dir=settings.DATA_DIR / "nats", port=port, sync_interval=SYNC_INTERVAL).start()
            os.environ["NATS_URL"] = server.url
            self.stdout.write(f"Started nats-server (pid {server.process.pid}) {server.url} with JetStream")
            self.stdout.write(f"  in {server.store_dir}, sync_interval: {server.sync_interval or 'the server default'}")
            keeper = Keeper(server, lambda line: self.stdout.write(self.style.WARNING(line)))
            keeper.start()
        else:
            self.stdout.write(f"Using NATS at NATS_URL={os.environ['NATS_URL']}")
        # A plain `kill` must stop the nats-server too: make SIGTERM unwind like Ctrl-C.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            call_command("migrate", interactive=False, verbosity=0)
            password = self.create_login()
            self.add_sample()
            host = addrport if ":" in addrport else f"127.0.0.1:{addrport}"
            self.stdout.write(
                self.style.SUCCESS(f"\nDemo: http://{host}/admin/   log in as {USERNAME} / {password}\n")
                + f"Bucket page: http://{host}/admin/natsstorage/bucket/   Stop with Ctrl-C.\n\n"
                + "For the natsos_* commands, in another terminal:\n"
                + f"    export NATS_URL={os.environ['NATS_URL']}\n"
                + "    .venv/bin/python manage.py natsos_ls configs\n"
            )
            # The bucket page shows the server's sync policy from its monitoring endpoint.
            monitor = {"monitor_url": server.monitor_url} if server is not None else {}
            with override_settings(NATSSTORAGE={**settings.NATSSTORAGE, **monitor}):
                call_command("runserver", addrport, use_reloader=False)
        finally:
            if keeper is not None:
                keeper.stop()
            close_connections()
            if server is not None:
                server.stop()
                self.stdout.write("Stopped the nats-server.")

    def create_login(self) -> str:
        """A superuser with a fresh password each run, printed, as nothing else knows it."""
        password = secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(
            username=USERNAME, defaults={"is_staff": True, "is_superuser": True}
        )
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        return password

    def add_sample(self) -> None:
        from demo_site.documents.models import Document

        if Document.objects.exists():
            return
        document = Document(title="Welcome", description="A sample made by manage.py demo")
        document.file.save("welcome.txt", ContentFile(b"Hello from a NATS JetStream Object Store.\n"), save=False)
        document.image.save("welcome.png", ContentFile(sample_png()), save=False)
        document.save()
