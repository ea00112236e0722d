"""The daemon's state directory (`state_dir` in the config): the one place that names what lives in it.

Layout::

    {state_dir}/
      outbox.sqlite3         results not yet acknowledged, and delivered ones kept for replay (agent/publish/outbox.py)
      queue/                 the low-confidence learning queue: index.sqlite3 + frames/ (agent/learn/queue.py)
      models/                the model store: base.json, adapters/vNNNN/, pointers.json (agent/store/)
      recalibration/         one folder per recalibration run, unless `recalibration.work_dir` says otherwise
      recalibrate.request    left by `cmd/recalibrate`; systemd's edge-inspect-recalibrate.path starts a run
      pictures/              annotated JPEGs of fail/uncertain frames behind results' image_url (agent/pictures.py)
      geometry/{camera}.json a camera's pixel -> mm geometry, by `edge-inspect calibrate camera` (agent/geometry.py)
      audit.jsonl            the station's audit log: who logged in, reviewed, ran, promoted, rolled back
      sparkplug.json         the Sparkplug edge node's last bdSeq and its result cursor (agent/sparkplug/)
      station.users          the first-start technician `admin`, written only when the config names no user
      station-admin.password its password (mode 0600), for the person installing the box

The daemon, the CLI, the recalibration run, the benchmarks and the tests all reach these paths through `StateDir`,
so a file never moves in one place only. (systemd units name `recalibrate.request` literally: keep them in step.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OUTBOX_FILE = "outbox.sqlite3"
QUEUE_DIR = "queue"
QUEUE_INDEX = "index.sqlite3"
MODELS_DIR = "models"
RECALIBRATION_DIR = "recalibration"
RECALIBRATE_REQUEST = "recalibrate.request"
STATION_USERS = "station.users"  # the first-start technician "admin", when the config names no user
STATION_ADMIN_PASSWORD = "station-admin.password"  # its password, readable by the daemon's user only
PICTURES_DIR = "pictures"  # annotated JPEGs of fail/uncertain frames, served by the station (agent/pictures.py)
AUDIT_FILE = "audit.jsonl"  # the station's audit log: who reviewed, ran, promoted, rolled back
SPARKPLUG_FILE = "sparkplug.json"  # the Sparkplug edge node's bdSeq and result cursor (agent/sparkplug/state.py)
GEOMETRY_DIR = "geometry"  # one camera geometry file per camera (agent/geometry.py), unless the config names one


@dataclass(frozen=True)
class StateDir:
    """Paths under one state directory; nothing is created until `create()` is called."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # accept str as well, like every caller's config

    @property
    def outbox(self) -> Path:
        return self.root / OUTBOX_FILE

    @property
    def queue(self) -> Path:
        return self.root / QUEUE_DIR

    @property
    def queue_index(self) -> Path:
        """The queue's SQLite index: its presence says whether a queue exists at all."""
        return self.queue / QUEUE_INDEX

    @property
    def models(self) -> Path:
        return self.root / MODELS_DIR

    @property
    def recalibration(self) -> Path:
        return self.root / RECALIBRATION_DIR

    @property
    def recalibrate_request(self) -> Path:
        return self.root / RECALIBRATE_REQUEST

    @property
    def station_users(self) -> Path:
        return self.root / STATION_USERS

    @property
    def station_admin_password(self) -> Path:
        return self.root / STATION_ADMIN_PASSWORD

    @property
    def pictures(self) -> Path:
        return self.root / PICTURES_DIR

    @property
    def audit_log(self) -> Path:
        return self.root / AUDIT_FILE

    @property
    def sparkplug(self) -> Path:
        return self.root / SPARKPLUG_FILE

    def geometry(self, camera: str) -> Path:
        """A camera's geometry file when `cameras[].geometry` names none (camera names are safe file names)."""
        return self.root / GEOMETRY_DIR / f"{camera}.json"

    def create(self) -> StateDir:
        """Make the root directory (the stores make their own subfolders); returns self for chaining."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self
