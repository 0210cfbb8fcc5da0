"""nerfstudio entry points of the package's dataparsers (see ``pyproject.toml``)."""

from __future__ import annotations

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from hand4dgs_ns.dataparsers.sequence_dataparser import (
    ArcticDataParserConfig,
    H2ODataParserConfig,
    SequenceDataParserConfig,
)
from hand4dgs_ns.errors import install_excepthook

install_excepthook()  # user errors inside nerfstudio's commands print one sentence, not a traceback

sequence_dataparser = DataParserSpecification(
    config=SequenceDataParserConfig(),
    description="Hand videos: hand4dgs sequence folders (rgb/, cameras.npz, hands.npz per video), H2O or ARCTIC, "
    "the layout detected from --data.",
)

h2o_dataparser = DataParserSpecification(
    config=H2ODataParserConfig(),
    description="H2O egocentric videos (cam4) with HaMeR pseudo-labels; needs the MANO files (--mano-dir).",
)

arctic_dataparser = DataParserSpecification(
    config=ArcticDataParserConfig(),
    description="ARCTIC egocentric videos (view 0) with HaMeR pseudo-labels; needs the MANO files (--mano-dir).",
)
