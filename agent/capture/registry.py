"""Which source a camera's URI names: the scheme table, the config-time check, and a source that cannot be built.

Schemes with their own module are registered as data in `SCHEMES` (prefix -> factory); every other URI goes to
`agent.capture.sources.open_source` (devices, network streams, `gst:`, files, `synthetic:`).

Two promises to the line:
- `source_problem` is what `check-config` (the camera config's validation) runs: a URI no source handles, a `gst:`
  source on an OpenCV without GStreamer, a `genicam://` source without Aravis are refused before the daemon starts.
- `create_source` never raises: a camera whose source cannot even be built (a URI that slipped past the check, a
  library removed since) becomes an `UnavailableSource`, so the worker reports that camera `offline` with the reason
  while the other cameras inspect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.capture import genicam
from agent.capture.sources import FrameSource, Image, SourceError, SourceOptions, open_source


@dataclass(frozen=True)
class Scheme:
    """A URI prefix (matched case-insensitively) and the factory that builds its source from the camera config."""

    prefix: str
    create: Callable[[str, Any], FrameSource]
    check: Callable[[str], None]  # raises ValueError explaining why the URI cannot work on this box


def _check_genicam(uri: str) -> None:
    genicam.device_id_of(uri)
    try:
        genicam.load_aravis()
    except ImportError as exc:
        raise ValueError(str(exc)) from None


SCHEMES: tuple[Scheme, ...] = (
    Scheme(genicam.SCHEME, genicam.create_genicam_source, _check_genicam),
)


def scheme_of(uri: str) -> Scheme | None:
    lowered = uri.strip().lower()
    return next((s for s in SCHEMES if lowered.startswith(s.prefix)), None)


def source_problem(uri: str) -> str | None:
    """Why no source can serve `uri` on this box, or None. Builds the source without opening it: no device is
    touched, so a camera that is merely switched off passes."""
    scheme = scheme_of(uri)
    try:
        if scheme is not None:
            scheme.check(uri)
        else:
            open_source(uri)
    except (ValueError, SourceError) as exc:
        return str(exc)
    return None


def create_source(camera: Any) -> FrameSource:
    """The source for a camera config (`source`, timeouts, `loop`, `genicam`); an `UnavailableSource` explaining
    why when it cannot be built."""
    uri = camera.source
    scheme = scheme_of(uri)
    try:
        if scheme is not None:
            return scheme.create(uri, camera)
        return open_source(uri, SourceOptions.from_camera(camera))
    except (ValueError, SourceError) as exc:
        return UnavailableSource(uri, str(exc))


class UnavailableSource(FrameSource):
    """A source that could not be built: every open fails with the reason, so the camera stays `offline` with it."""

    live = True

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(uri)
        self.reason = reason

    def open(self) -> None:
        raise SourceError(self.reason)

    def grab(self) -> bool:
        raise SourceError(self.reason)

    def retrieve(self) -> Image:
        raise SourceError(self.reason)
