"""pytest plugin of gperc (``gperc-core[testing]``): fixtures and the plugin conformance suite.

Registered as a ``pytest11`` entry point, so it is imported by every pytest run: it imports only
the standard library and pytest at module level; torch and the checks load inside the tests.

Fixtures:

- ``gperc_plugin_manager``: an isolated, strict `PluginManager` with only the plugins under test,
  also installed as `gperc_core.plugins.manager.default_plugin_manager()` for the test's duration. The
  plugins under test come from the ``gperc_plugins_under_test`` fixture (override it), which by
  default reads the marker ``@pytest.mark.gperc_plugins("image", my_module, ...)``: strings are
  installed plugins' entry-point names, other values plugin modules or objects registered in-process.
- ``gperc_fake_distribution``: a factory writing a fake installed plugin distribution (dist-info
  with METADATA and entry_points.txt, plus its module) into a temporary folder on ``sys.path``.

The conformance suite: subclass `PluginConformance` in a test module, name the plugin and supply
samples::

    from gperc_core.testing import PluginConformance

    class TestConformance(PluginConformance):
        plugin = "image"                        # entry-point name, or the plugin module itself

        def make_samples(self, modality):      # a few raw samples, ideally of different sizes
            return [numpy.zeros((8, 8)), numpy.ones((6, 7))]

        def options(self, modality):           # the task options the hooks read (default {})
            return {"representation": "pixels"}

`run_conformance` (in `gperc_core.testing.conformance`) runs the same checks outside pytest.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pytest

__all__ = ["PluginConformance", "run_conformance", "write_dist_info", "write_fake_distribution"]


def run_conformance(plugin: Any, make_samples: Any, options: Any = None,
                    modalities: Sequence[str] | None = None) -> list[str]:
    """Run the conformance suite on ``plugin``; see `gperc_core.testing.conformance.run_conformance`."""
    from gperc_core.testing.conformance import run_conformance as run

    return run(plugin, make_samples, options=options, modalities=modalities)


def write_dist_info(root: str | Path, dist_name: str, entry_points: Mapping[str, str], version: str = "1.0",
                    requires: Iterable[str] = ("gperc-core>=0.1,<0.2",)) -> Path:
    """Write the metadata pip leaves for an installed distribution into ``root``; return the dist-info folder.

    ``<dist>-<version>.dist-info/METADATA`` gets one ``Requires-Dist`` per entry of ``requires``;
    ``entry_points.txt`` advertises each ``plugin name -> module`` of ``entry_points`` in group ``gperc``.
    """
    info = Path(root) / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    lines = ["Metadata-Version: 2.1", f"Name: {dist_name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "entry_points.txt").write_text("[gperc]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    return info


def write_fake_distribution(root: str | Path, dist_name: str, module_name: str, source: str,
                            plugin_name: str | None = None, version: str = "1.0",
                            requires: Iterable[str] = ("gperc-core>=0.1,<0.2",)) -> Path:
    """Write an installed-looking one-module plugin distribution under ``root`` and return ``root``.

    The dist-info (see `write_dist_info`) advertises ``plugin_name = module_name`` (plugin name
    defaults to the module name) and ``<module_name>.py`` holds ``source``. Put ``root`` on
    ``sys.path`` (or ``PYTHONPATH``) and `importlib.metadata` finds it as if pip had installed it.
    """
    root = Path(root)
    write_dist_info(root, dist_name, {plugin_name or module_name: module_name}, version=version, requires=requires)
    (root / f"{module_name}.py").write_text(source)
    return root


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gperc_plugins(*plugins): plugins (entry-point names or modules) the gperc_plugin_manager "
                   "fixture loads")


@pytest.fixture
def gperc_plugins_under_test(request: pytest.FixtureRequest) -> list[Any]:
    """The plugins the isolated manager holds: the ``gperc_plugins`` marker's arguments (default none)."""
    marker = request.node.get_closest_marker("gperc_plugins")
    return list(marker.args) if marker else []


@pytest.fixture
def gperc_plugin_manager(gperc_plugins_under_test: list[Any], monkeypatch: pytest.MonkeyPatch):
    """An isolated, strict plugin manager with only the plugins under test, installed as the default."""
    from gperc_core.plugins import manager as plugins_module

    names = [p for p in gperc_plugins_under_test if isinstance(p, str)]
    objects = [p for p in gperc_plugins_under_test if not isinstance(p, str)]
    for var in (plugins_module.ENV_ALLOW, plugins_module.ENV_BLOCK, plugins_module.ENV_STRICT):
        monkeypatch.delenv(var, raising=False)
    with warnings.catch_warnings():  # strict: a failing plugin raises; a missing one is reported below
        warnings.simplefilter("ignore", plugins_module.PluginWarning)
        pm = plugins_module.get_plugin_manager(allow=names, block=[], strict=True, entry_points=bool(names),
                                               plugins=objects)
    missing = [n for n in names if pm.get_plugin(n) is None]
    if missing:
        raise pytest.UsageError(f"gperc_plugins: {missing} are not installed plugins (entry-point group 'gperc')")
    monkeypatch.setattr(plugins_module, "_default", pm)
    yield pm


@pytest.fixture
def gperc_fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Return ``make(dist_name, module_name, source, **kwargs) -> folder``: `write_fake_distribution` into a
    fresh folder under ``tmp_path`` that is put on ``sys.path`` for the test."""
    counter = iter(range(1_000_000))

    def make(dist_name: str, module_name: str, source: str, **kwargs: Any) -> Path:
        root = write_fake_distribution(tmp_path / f"site{next(counter)}", dist_name, module_name, source, **kwargs)
        monkeypatch.syspath_prepend(str(root))
        monkeypatch.delitem(sys.modules, module_name, raising=False)
        importlib.invalidate_caches()
        return root

    return make


class PluginConformance:
    """Base class of a plugin's conformance tests (see the module docstring).

    Subclasses set ``plugin`` (an installed plugin's entry-point name, or the plugin module) and
    implement ``make_samples(modality)``; ``options(modality)`` and ``modalities`` (the modalities to
    check, default all the plugin registers) are optional.
    """

    plugin: Any = None
    modalities: Sequence[str] | None = None

    def make_samples(self, modality: str) -> list[Any]:
        """Return at least two raw samples of ``modality`` (ideally of different sizes)."""
        raise NotImplementedError(f"{type(self).__name__}.make_samples(modality) must return raw samples of "
                                  f"{modality!r}")

    def options(self, modality: str) -> dict[str, Any]:
        """Return the task options of ``modality`` the plugin's hooks read."""
        return {}

    # ----------------------------------------------------------------- fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def conformance_manager(cls):
        """``(manager, plugin name)``: an isolated strict manager with only this plugin."""
        from gperc_core.testing.conformance import conformance_manager

        if cls.plugin is None:
            raise pytest.UsageError(f"{cls.__name__}.plugin: expected a plugin name or module, got None")
        return conformance_manager(cls.plugin)

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_modalities(cls, conformance_manager):
        """The `ModalitySpec` of each modality to check."""
        from gperc_core.testing.conformance import check_registration

        pm, name = conformance_manager
        specs = {s.name: s for s in check_registration(pm, name)}
        wanted = list(cls.modalities) if cls.modalities is not None else list(specs)
        unknown = [m for m in wanted if m not in specs]
        assert not unknown, f"{cls.__name__}.modalities: {unknown} are not registered by {name!r}"
        if not wanted:  # the per-modality tests would check nothing and pass: say so instead
            pytest.skip(f"plugin {name!r} registers no modality (or {cls.__name__}.modalities is empty): "
                        f"the per-modality checks do not apply")
        return [specs[m] for m in wanted]

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_inputs(cls, conformance_manager, conformance_modalities):
        """modality -> (spec, samples, options with the tokenizer added, tokenizer), tokenizers built once."""
        from gperc_core.testing.conformance import check_tokenizer

        pm, name = conformance_manager
        self = cls()
        result = {}
        for spec in conformance_modalities:
            samples = list(self.make_samples(spec.name))
            assert len(samples) >= 2, f"{type(self).__name__}.make_samples({spec.name!r}): expected >= 2 samples"
            opts = dict(self.options(spec.name) or {})
            tokenizer = check_tokenizer(pm, name, spec.name, samples, opts)
            result[spec.name] = (spec, samples, opts, tokenizer)
        return result

    @staticmethod
    def _arrays(conformance_manager, conformance_inputs):
        """Yield ``(modality, options, tokenizer, input arrays)`` per modality, checking the arrays."""
        from gperc_core.testing.conformance import check_input_arrays

        pm, name = conformance_manager
        for modality, (spec, samples, opts, tokenizer) in conformance_inputs.items():
            yield modality, opts, tokenizer, check_input_arrays(pm, name, spec, samples, opts, tokenizer)

    # ----------------------------------------------------------------- the checks
    def test_registers_and_stamps(self, conformance_manager) -> None:
        from gperc_core.testing.conformance import check_registration

        pm, name = conformance_manager
        check_registration(pm, name)
        info = next(i for i in pm.plugins_info() if i.name == name)
        assert any(info.registered.values()), f"plugin {name!r} registers no modality, dataset or task"

    def test_foreign_modality_is_not_answered(self, conformance_manager) -> None:
        from gperc_core.testing.conformance import check_foreign_modality

        check_foreign_modality(*conformance_manager)

    def test_tokenizer_and_input_arrays(self, conformance_manager, conformance_inputs) -> None:
        for modality, _, _, arrays in self._arrays(conformance_manager, conformance_inputs):
            assert len(arrays) == len(conformance_inputs[modality][1]), f"modality {modality!r}: one array per sample"

    def test_output_array(self, conformance_manager, conformance_inputs) -> None:
        from gperc_core.testing.conformance import check_output_array

        pm, name = conformance_manager
        for modality, (_, _, opts, _) in conformance_inputs.items():
            check_output_array(pm, name, modality, opts)

    @pytest.mark.parametrize("sentinels", [False, True], ids=["plain", "sentinels"])
    def test_collation(self, conformance_manager, conformance_inputs, sentinels: bool) -> None:
        from gperc_core.testing.conformance import check_collation

        pm, name = conformance_manager
        for modality, opts, _, arrays in self._arrays(conformance_manager, conformance_inputs):
            batch = check_collation(pm, name, modality, arrays, opts, sentinels=sentinels)
            if sentinels:
                assert all(batch[k] is not None for k in ("input_array", "attention_mask", "output_array")), \
                    f"modality {modality!r}: a sentinel batch must hold only tensors"

    def test_forward_pass(self, conformance_manager, conformance_inputs) -> None:
        from gperc_core.testing.conformance import check_collation, check_forward, check_output_array

        pm, name = conformance_manager
        for modality, opts, tokenizer, arrays in self._arrays(conformance_manager, conformance_inputs):
            fixed = check_output_array(pm, name, modality, opts)
            batch = check_collation(pm, name, modality, arrays, opts, sentinels=False)
            sentinel_batch = check_collation(pm, name, modality, arrays, opts, sentinels=True)
            logits = check_forward(name, modality, arrays, batch, fixed, tokenizer, sentinel_batch)
            assert logits.shape[0] == len(arrays), f"modality {modality!r}: one row of logits per sample"
