"""``nubes build``: a deployable artifact per cloud that fits its limits (see :mod:`.engine`).

Cloud-neutral: what differs per cloud (entry file, layout, platform tags, limits) comes from the
cloud's :class:`~nubes.adapters.base.Packaging`; nothing here compares provider names.

Modules: :mod:`.engine` (the steps), :mod:`.derive` / :mod:`.footprint` (what each route imports),
:mod:`.resolve` (wheels for the target), :mod:`.stage` (unpack, slim), :mod:`.bytecode`,
:mod:`.plan` (one function or a split), :mod:`.archive` (reproducible zip / tar.gz),
:mod:`.check` (import check), :mod:`.manifest`, :mod:`.config` (nubes.toml, the home store).
"""

from nubes.deploy.build.engine import BuildOptions, BuildResult, Progress, build, packaging_for
from nubes.deploy.build.errors import BuildError

__all__ = ["BuildError", "BuildOptions", "BuildResult", "Progress", "build", "packaging_for"]
