"""The audio plugin's hook implementations (entry point ``audio = "gperc_plugin_audio.plugin"``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gperc_core import DatasetSpec, InputArray, ModalitySpec, hookimpl, packaged_task_cards

from . import PLUGIN_NAME
from .datasets import load_audio_folder, load_audio_from_disk, load_spoken_digits
from .options import declared_options
from .synth import INSTALL_HINT

if TYPE_CHECKING:
    import torch

MODALITY = "audio"


@hookimpl
def gperc_register_modalities() -> list[ModalitySpec]:
    """Register the ``audio`` modality (raw float arrays)."""
    return [ModalitySpec(name=MODALITY, input_type="raw", options=declared_options(), read_file=read_file,
                         description="waveforms as log-mel / MFCC frames or raw samples with Fourier features")]


def read_file(path: str) -> dict[str, Any]:
    """Read one audio file (for ``gperc predict``) into the raw sample the hooks take:
    ``{"waveform": [C, T] float32, "sample_rate": int, "path": str}``."""
    from .waveform import read_audio

    waveform, rate = read_audio(path)
    return {"waveform": waveform, "sample_rate": rate, "path": str(path)}


@hookimpl
def gperc_register_datasets() -> list[DatasetSpec]:
    """Register ``spoken-digits`` (synthesised by espeak-ng and flite), ``audio-folder`` and
    ``audio-from-disk`` (your data)."""
    return [
        DatasetSpec(name="spoken-digits", modalities=[MODALITY], load=load_spoken_digits, num_classes=10,
                    splits=("train", "validation", "test"),
                    description="digits 0-9 spoken by espeak-ng and flite voices; test = a held-out flite voice; "
                                "validation = another one (option validation_voice)",
                    install_hint=INSTALL_HINT),
        DatasetSpec(name="audio-folder", volatile=True, modalities=[MODALITY], load=load_audio_folder,
                    description="your audio files as <root>/<label>/<file>.wav or <root>/<split>/<label>/<file>.wav "
                                "(datasets' audiofolder builder; options: root)",
                    install_hint="--set options.audio.root=<folder with one sub-folder per label>"),
        DatasetSpec(name="audio-from-disk", volatile=True, modalities=[MODALITY], load=load_audio_from_disk,
                    description="a datasets.save_to_disk folder with audio and label columns (options: path)",
                    install_hint="--set options.audio.path=<save_to_disk folder>"),
    ]


@hookimpl
def gperc_register_tasks() -> list[dict[str, Any]]:
    """The audio task cards shipped in ``gperc_plugin_audio/tasks/*.toml``."""
    return packaged_task_cards("gperc_plugin_audio")


@hookimpl
def gperc_input_array(modality: str, sample: Any, options: dict[str, Any]) -> InputArray | None:
    """Turn one audio sample (path, array, ``(array, rate)`` or dict) into its input array, with the
    time grid of fixed-length clips (the model computes their position features)."""
    if modality != MODALITY:
        return None
    from .features import position_grid, to_array
    from .options import AudioOptions
    from .waveform import prepare_waveform

    opts = AudioOptions.from_dict(options)
    array = to_array(prepare_waveform(sample, opts), opts)
    return InputArray(array=array, position=position_grid(opts, array.shape[0]))


@hookimpl
def gperc_transform(modality: str, array: InputArray, options: dict[str, Any], generator: torch.Generator
                    ) -> InputArray | None:
    """Training-time SpecAugment of one converted clip (``options['augment']``), fresh every epoch."""
    if modality != MODALITY:
        return None
    from .augment import augment_array

    return augment_array(array, options, generator)


__all__ = ["gperc_register_modalities", "gperc_register_datasets", "gperc_register_tasks", "gperc_input_array",
           "gperc_transform", "PLUGIN_NAME"]
