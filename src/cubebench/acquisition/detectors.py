"""Named detector profiles: frame shape, bit depth, maximum frame rate (or event rate), each with its source.

``verified`` is True only where the figure was read in the cited source; the others are the usual quoted
figures, marked unverified until someone checks the manufacturer's sheet. Event detectors (Timepix3/4) are given
as hit rates with the bytes per hit of their data-driven readout; ``frame_rate`` is then hits per second and a
"frame" is one hit.
"""

from __future__ import annotations

from dataclasses import dataclass

from cubebench.errors import ConfigError

__all__ = ["DETECTORS", "Detector", "get_detector"]


@dataclass(frozen=True)
class Detector:
    """A detector's output stream."""

    name: str
    description: str
    frame_shape: tuple[int, int]
    bits: int
    #: Frames per second at full frame (or hits per second for an event detector).
    frame_rate: float
    source: str
    verified: bool
    #: Event detectors: bytes per hit (a "frame" is one hit); 0 for frame detectors.
    event_bytes: int = 0
    note: str = ""

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame (stored at the next whole byte width: 12 bits in 2 bytes), or of one event."""
        if self.event_bytes:
            return self.event_bytes
        return self.frame_shape[0] * self.frame_shape[1] * max(1, -(-self.bits // 8))

    @property
    def data_rate(self) -> float:
        """Bytes per second at :attr:`frame_rate`."""
        return self.frame_rate * self.frame_bytes


DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector(
            "merlin",
            "Quantum Detectors Merlin for EM (Medipix3, 256 x 256), 12-bit counting",
            (256, 256),
            12,
            1_200.0,
            "https://quantumdetectors.com/merlin-for-em/ (up to 24-bit depth, 'kilohertz frame rates in continuous "
            "mode'); the 12-bit rate is the usually quoted figure",
            False,
            note="the manufacturer's page gives 'kilohertz' rates without a number per bit depth",
        ),
        Detector(
            "arina",
            "DECTRIS ARINA hybrid-pixel 4D-STEM detector (96 x 96), 16-bit",
            (96, 96),
            16,
            120_000.0,
            "https://www.dectris.com/detectors/electron-detectors/for-materials-science/arina/ (not reached from here; "
            "96 x 96 frames are seen in published ARINA data sets)",
            False,
        ),
        Detector(
            "empad-g2",
            "EMPAD-G2 pixel array detector (128 x 128), 32-bit stored",
            (128, 128),
            32,
            10_000.0,
            "Philipp et al., 'Very-High Dynamic Range, 10,000 Frames/Second Pixel Array Detector for Electron "
            "Microscopy', Microscopy and Microanalysis (Cambridge University Press, online 7 March 2022)",
            True,
            note="frame shape from the EMPAD paper (Tate et al. 2016, 128 x 128); 32-bit storage assumed",
        ),
        Detector(
            "4d-camera",
            "NCEM 4D Camera (576 x 576 active pixel sensor), 87 kHz, 12-bit raw",
            (576, 576),
            12,
            87_000.0,
            "Ercius et al., 'The 4D Camera: An 87 kHz Direct Electron Detector for Scanning/Transmission Electron "
            "Microscopy', Microsc. Microanal. (2024), doi:10.1093/mam/ozae086 (576 x 576, 87,000 Hz, ~480 Gbit/s)",
            True,
            note="the paper's ~480 Gbit/s is the raw stream; 12-bit samples held in 2 bytes here",
        ),
        Detector(
            "timepix3",
            "Timepix3 (256 x 256) data-driven readout, per chip",
            (256, 256),
            16,
            80e6,
            "Poikela et al. 2014 via https://authorea.com/users/13939/articles/310618 ('48-bit word for each pixel "
            "hit, 5.2 Gbps output bandwidth, 80 Mhits/s'); 8-byte packets: https://forum.advacam.com/t/timepix3-technical-notes/95",
            False,
            event_bytes=8,
            note="hits per second per chip; quad cameras have four chips",
        ),
        Detector(
            "timepix4",
            "Timepix4 (448 x 512) data-driven readout, per chip",
            (448, 512),
            16,
            3.58e6 * 693.0,
            "https://medipix.web.cern.ch/index.php/faqs (3.58e6 hits/mm2/s, 64-bit per hit, 6.93 cm2 sensitive "
            "area, frame mode up to 89 kFPS)",
            True,
            event_bytes=8,
            note="2.48e9 hits/s = 3.58e6 hits/mm2/s x 693 mm2",
        ),
    )
}


def get_detector(name: str) -> Detector:
    """The profile called ``name``; an unknown name is a one-line error listing the known ones."""
    try:
        return DETECTORS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}") from None
