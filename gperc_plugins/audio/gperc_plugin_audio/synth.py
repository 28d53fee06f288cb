"""Spoken digits synthesised offline by espeak-ng, flite and festival (Debian packages), cached with a
manifest.

A `SynthesisPlan` lists every clip: ten digit words, each spoken by espeak-ng (accents x voice
variants x speeds x pitches), by flite (voices x duration stretches x pitch targets) and, when the plan
names festival voices, by festival (voices x duration stretches x pitch targets). `synthesize`
renders the missing clips into a cache folder (two subprocesses at a time), then writes
``manifest-<plan hash>.json``; a rerun with the same plan finds the manifest and renders nothing.
Clip files are named by their parameters, so plans that overlap share files. A file lock keeps
concurrent processes (DataLoader workers, parallel tests) from rendering the same clip twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from gperc_core import TaskError

from . import PLUGIN_NAME

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
INSTALL_HINT = "apt-get install espeak-ng flite"
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
# festival voice name -> (the Scheme function selecting it, the Debian package shipping it)
FESTIVAL_VOICES: dict[str, tuple[str, str]] = {"ked": ("voice_ked_diphone", "festvox-kdlpc16k")}


def festival_install_hint(voices: Sequence[str]) -> str:
    """The apt-get line that installs festival and the packages of ``voices``."""
    return "apt-get install festival " + " ".join(FESTIVAL_VOICES[v][1] for v in voices)


def scheme_string(text: str) -> str:
    """``text`` as a double-quoted Scheme string literal (festival's expressions), backslashes and quotes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Clip:
    """One clip of the plan: ``file`` relative to the cache folder, its digit and who spoke it."""

    file: str
    label: int
    synth: str
    voice: str
    args: tuple[str, ...]

    def command(self, out: Path) -> list[str]:
        """The command line that renders this clip into ``out``."""
        word = DIGIT_WORDS[self.label]
        if self.synth == "espeak-ng":
            return ["espeak-ng", *self.args, "-w", str(out), word]
        if self.synth == "festival":
            return ["festival", "--batch", *self.args,
                    f'(utt.save.wave (SynthText "{word}") {scheme_string(str(out))} \'riff)']
        return ["flite", *self.args, "-t", word, "-o", str(out)]


@dataclass(frozen=True)
class SynthesisPlan:
    """What to synthesise. Defaults: 6 accents x 12 variants x 2 speeds x 2 pitches of espeak-ng
    (2,880 clips) and, per flite voice, 6 duration stretches x 5 pitch targets (300 clips); festival
    voices (none by default) are spoken with the same stretches and pitch targets as flite's."""

    digits: tuple[int, ...] = tuple(range(10))
    espeak_accents: tuple[str, ...] = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-029")
    espeak_variants: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
    espeak_speeds: tuple[int, ...] = (130, 170)
    espeak_pitches: tuple[int, ...] = (35, 65)
    flite_voices: tuple[str, ...] = FLITE_VOICES
    flite_stretches: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3)
    flite_pitches: tuple[int, ...] = (90, 110, 130, 150, 170)
    festival_voices: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, options: dict) -> "SynthesisPlan":
        """Build a plan, taking any field present in ``options`` (lists become tuples)."""
        values = {}
        for name in asdict(cls()):
            if name in options:
                value = options[name]
                if isinstance(value, (str, int, float)) or not isinstance(value, Sequence):
                    raise TaskError(f"{PLUGIN_NAME} plugin: options[{name!r}]: expected a list, got {value!r}")
                values[name] = tuple(value)
        plan = cls(**values)
        bad = [d for d in plan.digits if not isinstance(d, int) or not 0 <= d <= 9]
        if bad:
            raise TaskError(f"{PLUGIN_NAME} plugin: options['digits']: expected digits 0..9, got {list(plan.digits)}")
        unknown = [v for v in plan.flite_voices if v not in FLITE_VOICES]
        if unknown:
            raise TaskError(f"{PLUGIN_NAME} plugin: options['flite_voices']: expected voices among {FLITE_VOICES}, "
                            f"got {unknown}")
        unknown = [v for v in plan.festival_voices if v not in FESTIVAL_VOICES]
        if unknown:
            raise TaskError(f"{PLUGIN_NAME} plugin: options['festival_voices']: expected voices among "
                            f"{tuple(FESTIVAL_VOICES)}, got {unknown}")
        return plan

    def digest(self) -> str:
        """A short hash naming this plan's manifest (a plan without festival voices keeps the hash it had
        before festival was supported)."""
        fields = asdict(self)
        if not fields["festival_voices"]:
            del fields["festival_voices"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    def clips(self) -> list[Clip]:
        """Every clip of the plan, in a fixed order."""
        out: list[Clip] = []
        for digit in self.digits:
            for accent in self.espeak_accents:
                for variant in self.espeak_variants:
                    for speed in self.espeak_speeds:
                        for pitch in self.espeak_pitches:
                            voice = f"{accent}+{variant}"
                            out.append(Clip(f"espeak-ng/{voice}_s{speed}_p{pitch}_{digit}.wav", digit, "espeak-ng",
                                            voice, ("-v", voice, "-s", str(speed), "-p", str(pitch))))
            for voice in self.flite_voices:
                for stretch in self.flite_stretches:
                    for f0 in self.flite_pitches:
                        out.append(Clip(f"flite/{voice}_d{stretch}_f{f0}_{digit}.wav", digit, "flite", voice,
                                        ("-voice", voice, "--setf", f"duration_stretch={stretch}",
                                         "--setf", f"int_f0_target_mean={f0}")))
            for voice in self.festival_voices:
                for stretch in self.flite_stretches:
                    for f0 in self.flite_pitches:
                        out.append(Clip(f"festival/{voice}_d{stretch}_f{f0}_{digit}.wav", digit, "festival", voice,
                                        _festival_args(voice, stretch, f0)))
        return out


def _festival_args(voice: str, stretch: float, f0: int) -> tuple[str, ...]:
    """festival --batch expressions: select ``voice``, stretch durations, move the mean pitch target to
    ``f0`` Hz (the diphone voices' linear-regression intonation, keeping their std and model)."""
    return (f"({FESTIVAL_VOICES[voice][0]})", f"(Parameter.set 'Duration_Stretch {stretch})",
            f"(set! int_lr_params '((target_f0_mean {f0}) (target_f0_std 15) (model_f0_mean 170) (model_f0_std 34)))")


def default_cache_dir() -> Path:
    """``$GPERC_CACHE/spoken-digits``, or ``~/.cache/gperc/spoken-digits``."""
    root = os.environ.get("GPERC_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "gperc") / "spoken-digits"


def check_tools(plan: SynthesisPlan) -> None:
    """Raise `TaskError` with the apt-get line when a synthesiser the plan needs is not installed."""
    needed = []
    if plan.espeak_accents and plan.espeak_variants:
        needed.append("espeak-ng")
    if plan.flite_voices:
        needed.append("flite")
    if plan.festival_voices:
        needed.append("festival")
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        hints = [INSTALL_HINT] + ([festival_install_hint(plan.festival_voices)] if plan.festival_voices else [])
        raise TaskError(f"{PLUGIN_NAME} plugin: dataset 'spoken-digits': expected the synthesisers {needed} on "
                        f"PATH, got {missing} missing; install them with " + " and ".join(f"`{h}`" for h in hints))


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _render(clip: Clip, root: Path) -> str | None:
    """Render one clip atomically (temporary file, then rename); return an error text or ``None``."""
    target = root / clip.file
    if target.is_file() and target.stat().st_size > 44:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".wav", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run(clip.command(Path(tmp)), capture_output=True, text=True, timeout=60)
        if proc.returncode != 0 or os.path.getsize(tmp) <= 44:
            return f"{' '.join(clip.command(target))}: exit {proc.returncode} {proc.stderr.strip()[:200]}"
        os.replace(tmp, target)
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def synthesize(plan: SynthesisPlan, cache_dir: Path | None = None, workers: int = 2) -> list[Clip]:
    """Make sure every clip of ``plan`` exists under ``cache_dir``; return the plan's clips.

    Reuses ``manifest-<plan digest>.json`` when present and every file it lists exists; otherwise
    renders the missing clips (``workers`` subprocesses at a time) and writes the manifest.
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    clips = plan.clips()
    manifest = root / f"manifest-{plan.digest()}.json"
    if _manifest_ok(manifest, root, clips):
        return clips
    check_tools(plan)
    with _locked(root):
        if _manifest_ok(manifest, root, clips):
            return clips
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            errors = [e for e in pool.map(lambda c: _render(c, root), clips) if e]
        if errors:
            hint = (f" (a festival voice missing? `{festival_install_hint(plan.festival_voices)}`)"
                    if plan.festival_voices else "")
            raise TaskError(f"{PLUGIN_NAME} plugin: dataset 'spoken-digits': expected every clip to render, got "
                            f"{len(errors)} failures, first: {errors[0]}{hint}")
        data = {"plan": asdict(plan), "clips": [asdict(c) for c in clips]}
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, manifest)
    return clips


def _manifest_ok(manifest: Path, root: Path, clips: list[Clip]) -> bool:
    if not manifest.is_file():
        return False
    try:
        listed = [c["file"] for c in json.loads(manifest.read_text())["clips"]]
    except (ValueError, KeyError, TypeError):
        return False
    return listed == [c.file for c in clips] and all((root / f).is_file() for f in listed)
