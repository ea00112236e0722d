"""The config's sections: one pydantic model per YAML section, each forbidding unknown keys so a typo is an error,
never a silently ignored setting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from agent.capture.genicam import PIXEL_FORMATS
from agent.capture.genicam import SCHEME as GENICAM_SCHEME
from agent.capture.registry import source_problem
from agent.config.rules import SizeRuleConfig, known_classes
from agent.modeldir import looks_local
from agent.unique_names import require_unique

# one MQTT topic level: no separators, wildcards or NUL; short enough for dashboards
_TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MiB = 1024 * 1024
GiB = 1024 * MiB


def topic_level(value: str, what: str) -> str:
    """Check that `value` can be used as one MQTT topic level (device id, camera name)."""
    if not _TOPIC_LEVEL.match(value):
        raise ValueError(
            f"{what} {value!r} must be 1-64 chars of letters, digits, '_', '.', '-' "
            "(starting with a letter or digit) to be safe as an MQTT topic level"
        )
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ModelConfig(_Section):
    path: Path = Field(
        default=Path("./models/demo"), description="Base model directory (save_pretrained layout) or hub id (org/name)"
    )
    adapter: Path | None = Field(default=None, description="LoRA adapter directory applied on top of the base, or null")
    classes: list[str] = Field(
        default=["scratch", "hole", "stain"], min_length=1, description="Defect classes, in order"
    )
    backend: Literal["torch-eager", "torch-fast", "onnx"] = Field(
        default="torch-eager", description="Inference backend"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto = cuda when available, else cpu")
    quantize: Literal["none", "int8-weight"] = Field(
        default="none", description="int8-weight: the text encoder/decoder weights as int8 with a scale per row "
        "(backend torch-fast only; for decode speed on CUDA and memory; docs/performance.md)"
    )
    max_new_tokens: int = Field(default=64, ge=1, le=4096, description="Generation budget per frame")
    thresholds: dict[str, float] = Field(
        default={}, description="Per-class score threshold; classes not listed use default"
    )
    default_threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="Threshold for classes without their own")
    uncertain_band: float = Field(
        default=0.1, ge=0.0, le=1.0, description="A box with |score - threshold| < band makes the verdict 'uncertain'"
    )
    size_rules: dict[str, SizeRuleConfig] = Field(default={}, description="Per-class minimum size on the belt, e.g. "
        "{scratch: {min_length_mm: 2}}: a box reaching none of its class's minimums is undersized, not a defect; "
        "needs the camera's geometry (docs/cameras.md), without one boxes are judged by score alone")

    @field_validator("path", mode="before")
    @classmethod
    def _local_path_exists(cls, path: Any) -> Any:
        """A path written as a local one (`./models/x`, `/opt/m`, `~/m`, `models/x` where `models/` exists) must be
        an existing directory: otherwise it would be taken for a hub id and retried over the network for minutes."""
        if isinstance(path, str) and looks_local(path) and not Path(path).expanduser().is_dir():
            raise ValueError(f"model directory {path!r} does not exist (a hub id is written 'org/name'); "
                             "the shipped demo model is ./models/demo")
        return path

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, classes: list[str]) -> list[str]:
        require_unique(classes, "class names")
        return classes

    @field_validator("thresholds", "size_rules")
    @classmethod
    def _classes_known(cls, per_class: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        known_classes(per_class, info.data.get("classes", []), str(info.field_name).replace("_", " "))
        return per_class

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, thresholds: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in thresholds.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"thresholds must be within [0, 1], got {bad}")
        return thresholds

    @model_validator(mode="after")
    def _quantize_needs_torch_fast(self) -> ModelConfig:
        if self.quantize != "none" and self.backend != "torch-fast":
            raise ValueError(f"quantize {self.quantize!r} needs backend 'torch-fast', not {self.backend!r} (the onnx "
                             "backend takes an INT8 export: edge-inspect export onnx --precision int8)")
        return self

    def threshold(self, label: str) -> float:
        """The score threshold that applies to `label`."""
        return self.thresholds.get(label, self.default_threshold)


class LineScanConfig(_Section):
    lines_per_frame: int = Field(
        ge=1, le=65536, description="Lines stitched into one inspected frame (the frame's height in pixels)"
    )
    lines_per_buffer: int | None = Field(
        default=None, ge=1, le=65536,
        description="Set the camera's Height (lines per grabbed buffer) to this; unset: the camera's own",
    )


class GenICamConfig(_Section):
    pixel_format: str | None = Field(
        default=None, description=f"GenICam PixelFormat to set, one of {', '.join(PIXEL_FORMATS)} (unset: the "
        "camera's current one)"
    )
    exposure_us: float | None = Field(
        default=None, gt=0, description="Exposure time in microseconds, auto exposure off (unset: the camera's own)"
    )
    gain_db: float | None = Field(
        default=None, ge=0, description="Gain in dB, auto gain off (unset: the camera's own)"
    )
    trigger: Literal["free-run", "software", "hardware"] = Field(
        default="free-run",
        description="free-run: the camera's own rate; software: one exposure per frame at fps; hardware: on "
        "trigger_line (set no_frame_timeout_s above the longest gap between parts)",
    )
    trigger_line: str = Field(
        default="Line0", min_length=1, description="TriggerSource for trigger: hardware (e.g. Line0, Line1)"
    )
    line_scan: LineScanConfig | None = Field(
        default=None, description="A line-scan camera: stitch grabbed lines into frames (unset: area camera)"
    )

    @field_validator("pixel_format")
    @classmethod
    def _convertible_format(cls, pixel_format: str | None) -> str | None:
        if pixel_format is not None and pixel_format not in PIXEL_FORMATS:
            raise ValueError(f"pixel format {pixel_format!r} is not one the daemon converts: {list(PIXEL_FORMATS)}")
        return pixel_format


class CameraConfig(_Section):
    name: str = Field(default="cam0", description="Camera name, used as an MQTT topic level (unique)")
    source: str = Field(
        default="synthetic:seed=0",
        min_length=1,
        description="Source URI: device index, /dev/videoN, rtsp://, http(s)://, gst:<pipeline>, "
        "genicam://<device id or IP>, file or directory path, synthetic:<params> (docs/cameras.md)",
    )
    fps: float = Field(default=10.0, gt=0, le=1000, description="Frames per second to capture (or replay)")
    mode: Literal["free-run", "trigger"] = Field(
        default="free-run", description="free-run: latest frame wins; trigger: one frame per MQTT trigger"
    )
    loop: bool = Field(default=True, description="Replay files/directories in a loop")
    enabled: bool = Field(default=True, description="A disabled camera is reported as 'disabled' and never opened")
    open_timeout_s: float = Field(default=10.0, gt=0, description="Give up opening the source after this long")
    read_timeout_s: float = Field(default=5.0, gt=0, description="Give up on one read after this long")
    no_frame_timeout_s: float = Field(default=5.0, gt=0, description="No frame for this long -> reconnect")
    reconnect_min_s: float = Field(default=0.5, gt=0, description="First reconnect delay (doubles each failure)")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Longest reconnect delay")
    queue_size: int = Field(
        default=2, ge=1, le=1000, description="Frames buffered per camera before dropping (counted)"
    )
    trigger_queue: int = Field(
        default=4, ge=1, le=1000, description="trigger mode: parts in flight (accepted, result not yet published) "
        "before a trigger is refused as 'overflow'"
    )
    genicam: GenICamConfig | None = Field(
        default=None, description="GenICam camera settings; only for a genicam:// source (docs/cameras.md)"
    )
    geometry: Path | None = Field(default=None, description="Camera geometry file (by edge-inspect calibrate camera) "
                                  "for defect sizes in mm; null: {state_dir}/geometry/{name}.json (docs/cameras.md)")

    @field_validator("name")
    @classmethod
    def _topic_safe_name(cls, name: str) -> str:
        return topic_level(name, "camera name")

    @model_validator(mode="after")
    def _backoff_order(self) -> CameraConfig:
        _check_backoff(self.reconnect_min_s, self.reconnect_max_s)
        return self

    @model_validator(mode="after")
    def _source_served(self) -> CameraConfig:
        """Refuse, before the daemon starts, a source URI that no source on this box can serve."""
        problem = source_problem(self.source)
        if problem is not None:
            raise ValueError(f"camera {self.name!r}: source {self.source!r} cannot work: {problem}")
        if self.genicam is not None and not self.source.strip().lower().startswith(GENICAM_SCHEME):
            raise ValueError(f"camera {self.name!r}: a genicam section needs a genicam:// source, not {self.source!r}")
        return self


class BatchConfig(_Section):
    max_frames: int = Field(default=4, ge=1, le=256, description="Largest batch handed to the detector")
    max_wait_ms: float = Field(default=20.0, ge=0, description="Longest wait to fill a batch after its first frame")


class TlsConfig(_Section):
    enabled: bool = Field(default=False, description="Connect with TLS")
    ca_file: Path | None = Field(
        default=None, description="CA bundle that signed the broker certificate (null: system CAs)"
    )
    cert_file: Path | None = Field(
        default=None, description="Client certificate (PEM) for brokers with require_certificate"
    )
    key_file: Path | None = Field(
        default=None, description="Client private key (PEM); may live in $CREDENTIALS_DIRECTORY"
    )
    insecure: bool = Field(default=False, description="Skip broker hostname verification (test benches only)")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class MqttConfig(_Section):
    host: str = Field(default="127.0.0.1", min_length=1, description="Broker host")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port")
    prefix: str = Field(default="edge-inspect", description="First topic levels; topics are {prefix}/{device_id}/...")
    client_id: str | None = Field(
        default=None, description="MQTT client id; null: edge-inspect-{device_id} (must be stable)"
    )
    username: str | None = Field(default=None, description="Broker user name")
    password: SecretStr | None = Field(default=None, description="Broker password (or credential file mqtt.password)")
    keepalive: int = Field(default=30, ge=5, le=65535, description="Keepalive seconds; a dead link shows in ~1.5x this")
    session_expiry_s: int = Field(
        default=3600, ge=0, description="How long the broker keeps our session (and queued QoS 1) while we are away"
    )
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS settings")
    reconnect_min_s: float = Field(default=0.5, gt=0, description="First reconnect delay")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Longest reconnect delay")
    inflight: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="Results published but not yet acknowledged, at most; keep below the broker's receive maximum "
        "(Mosquitto: max_inflight_messages, 20 by default)",
    )

    @field_validator("prefix")
    @classmethod
    def _prefix_levels(cls, prefix: str) -> str:
        for level in prefix.split("/"):
            topic_level(level, f"prefix level in {prefix!r}:")
        return prefix

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttConfig:
        _check_backoff(self.reconnect_min_s, self.reconnect_max_s)
        return self


class OutboxConfig(_Section):
    max_bytes: int = Field(default=512 * MiB, ge=64 * 1024, description="Disk budget of the result outbox")
    alarm_fraction: float = Field(
        default=0.8, gt=0, le=1, description="Raise an alarm event above this share of max_bytes"
    )
    retention_hours: float = Field(
        default=24.0, ge=0, description="Keep delivered results this long for `cmd/replay` (0: drop them within a "
        "minute of their PUBACK)"
    )
    retention_max_bytes: int = Field(
        default=64 * MiB, ge=0, description="Disk budget of the delivered results kept for replay (oldest delivery "
        "pruned first); separate from max_bytes, which only counts results not yet delivered"
    )


class QueueConfig(_Section):
    enabled: bool = Field(default=True, description="Keep low-confidence frames for later review/fine-tuning")
    max_bytes: int = Field(
        default=1 * GiB, ge=1 * MiB, description="Disk budget of the learning queue (oldest evicted)"
    )
    band: float = Field(
        default=0.15, ge=0, le=1, description="threshold-band sampler: keep boxes with |score-thr| < band"
    )
    per_minute: int = Field(default=10, ge=0, description="Quota of queued frames per minute")
    per_hour: int = Field(default=200, ge=0, description="Quota of queued frames per hour")
    per_day: int = Field(default=2000, ge=0, description="Quota of queued frames per day")
    random_rate: float = Field(default=0.0, ge=0, le=1, description="random sampler: share of frames kept (0 disables)")
    dedup_max_distance: int = Field(
        default=6, ge=0, le=64, description="Near-duplicate: dHash differs in <= this many bits (and same boxes)"
    )
    samplers: list[Literal["threshold-band", "flagged-miss", "random"]] = Field(
        default=["threshold-band", "flagged-miss", "random"], description="Active samplers"
    )
    review_order: Literal["unsure", "unsure-varied"] = Field(
        default="unsure", description="Order of the station's review list: 'unsure' = most unsure first; "
        "'unsure-varied' = still unsure first, but each next frame the least like those before it (frame hash) "
        "among the most unsure, for queues that fill with runs of look-alike frames (on the bench's independent "
        "frames it taught no more than 'unsure': docs/training.md, active learning)"
    )
    golden_fraction: float = Field(
        default=0.2, ge=0, le=1, description="Share of reviewed frames held out as the golden set that judges models "
        "(stable by frame hash; the station's golden toggle overrides it per frame)"
    )
    flag_parts: int = Field(
        default=1000, ge=0, le=100000, description="cmd/flag: inspected parts (with a part_id) remembered per camera, "
        "so the line can flag one as bad after its result (older ones are answered 'forgotten')"
    )
    flag_frames_bytes: int = Field(
        default=256 * MiB, ge=0, description="cmd/flag: memory for the frames of remembered pass/uncertain parts, "
        "newest kept (a frame is about width x height x 3 bytes); a part whose frame was let go cannot be queued"
    )


class PicturesConfig(_Section):
    enabled: bool = Field(default=True, description="Keep an annotated JPEG of every fail/uncertain frame and put its "
                          "station URL in the result (image_url); needs the station")
    max_count: int = Field(default=1000, ge=1, description="Pictures kept at most (oldest evicted first)")
    max_bytes: int = Field(default=256 * MiB, ge=1 * MiB, description="Disk budget of the pictures (oldest evicted "
                           "first)")
    jpeg_quality: int = Field(default=85, ge=10, le=100, description="JPEG quality of the pictures")


class MetricsConfig(_Section):
    enabled: bool = Field(default=True, description="Serve Prometheus metrics")
    host: str = Field(default="127.0.0.1", description="Bind address (keep it loopback unless firewalled)")
    port: int = Field(default=9108, ge=1, le=65535, description="Metrics port")


class CommandsConfig(_Section):
    require_signature: bool = Field(default=False, description="Reject commands without a valid HMAC signature")
    hmac_key: SecretStr | None = Field(default=None, description="HMAC key (or credential file commands.hmac_key)")
    max_skew_s: float = Field(default=30.0, gt=0, description="Reject signed commands whose timestamp is older/newer")

    @model_validator(mode="after")
    def _key_when_required(self) -> CommandsConfig:
        if self.require_signature and self.hmac_key is None:
            raise ValueError("require_signature is true but no hmac_key is set (config or credential file)")
        return self


def _check_backoff(low: float, high: float) -> None:
    if low > high:
        raise ValueError(f"reconnect_min_s ({low}) must not exceed reconnect_max_s ({high})")
