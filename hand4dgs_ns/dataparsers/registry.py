"""nerfstudio entry points of the package's dataparsers (see ``pyproject.toml``)."""

from __future__ import annotations

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from hand4dgs_ns.dataparsers.sequence_dataparser import SequenceDataParserConfig
from hand4dgs_ns.errors import install_excepthook

install_excepthook()  # user errors inside nerfstudio's commands print one sentence, not a traceback

sequence_dataparser = DataParserSpecification(
    config=SequenceDataParserConfig(),
    description="Hand videos in the hand4dgs sequence format v1 (rgb/, cameras.npz, hands.npz per video).",
)
