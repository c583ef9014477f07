"""Tap-test audio: modal synthesis of the struck part, in a factory.

The part rings as a sum of exponentially decaying sinusoids at its modes, each jittered
per part as manufacturing spreads them. The station adds pink background noise, mains hum
and now and then a knock from a neighbouring machine, in good parts as much as in bad, so
none of them is a cue. A crack lowers the modes it cuts through and makes them die out
faster (friction at the crack faces), and sometimes rattles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspection.synth.products import Product
from inspection.types import AUDIO_SAMPLE_RATE, AudioClip

DURATION_S = 1.0
PEAK = 0.5
FREQ_JITTER = 0.015
DAMPING_JITTER = 0.10
CRACK_SHIFT = (0.03, 0.10)  # relative downward shift of an affected mode
CRACK_DAMPING = (2.0, 4.0)  # damping factor of an affected mode
MAINS_HZ = 50.0


@dataclass(frozen=True)
class CrackEffect:
    """How a crack changes the tap: per-mode frequency and damping factors, and a rattle."""

    freq_factors: tuple[float, ...]
    damping_factors: tuple[float, ...]
    rattle: bool


def crack_effect(product: Product, length_mm: float, rng: np.random.Generator) -> CrackEffect:
    """Draw a crack's acoustic effect; longer cracks shift the modes further.

    The fundamental is always affected (it bends the whole part); each higher mode is with
    probability 0.6, depending on where its nodal lines fall relative to the crack.
    """
    severity = float(np.clip((length_mm - 2.0) / 15.0, 0.0, 1.0))
    lo, hi = CRACK_SHIFT
    base = lo + (hi - lo) * (0.3 * rng.random() + 0.7 * severity)
    damp = rng.uniform(*CRACK_DAMPING)
    freq, damping = [], []
    for i in range(len(product.modes)):
        if i == 0 or rng.random() < 0.6:
            shift = float(np.clip(base * rng.uniform(0.8, 1.2), lo, hi))
            freq.append(1.0 - shift)
            damping.append(damp * rng.uniform(0.9, 1.1))
        else:
            freq.append(1.0 - rng.uniform(0.0, 0.01))
            damping.append(rng.uniform(1.0, 1.3))
    return CrackEffect(tuple(freq), tuple(damping), rattle=bool(rng.random() < 0.4))


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-RMS noise with a 1/f power spectrum (above 20 Hz)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / AUDIO_SAMPLE_RATE)
    spectrum /= np.sqrt(np.maximum(f, 20.0))
    x = np.fft.irfft(spectrum, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _burst(
    rng: np.random.Generator, n: int, start_s: float, decay_s: float, smooth: int
) -> np.ndarray:
    """A decaying noise burst starting at ``start_s`` (zero before, and after it died)."""
    sr = AUDIO_SAMPLE_RATE
    i0 = int(start_s * sr)
    length = max(1, min(n - i0, int(10 * decay_s * sr)))
    out = np.zeros(n)
    if i0 >= n:
        return out
    noise = rng.standard_normal(length + smooth)
    if smooth > 1:  # duller knocks: a moving-average low-pass
        noise = np.convolve(noise, np.ones(smooth) / np.sqrt(smooth), mode="same")
    env = np.exp(-np.arange(length) / (decay_s * sr))
    out[i0 : i0 + length] = env * noise[:length]
    return out


def tap_audio(
    product: Product, rng: np.random.Generator, crack_length_mm: float | None = None
) -> AudioClip:
    """Synthesise one tap-test clip.

    Parameters
    ----------
    product : Product
        Supplies the nominal modes.
    rng : np.random.Generator
        The part's audio stream. The crack's effect is drawn after everything else, so a
        cracked part and its good twin share their background and jitter.
    crack_length_mm : float | None
        Length of a crack (visible or internal), or ``None`` for a sound part.

    Returns
    -------
    AudioClip
        ``DURATION_S`` of float32 mono at ``AUDIO_SAMPLE_RATE``, peak about ``PEAK``.
    """
    sr = AUDIO_SAMPLE_RATE
    n = int(DURATION_S * sr)
    t = np.arange(n) / sr
    onset = rng.uniform(0.05, 0.15)
    modes = product.modes
    freqs = np.array([m.freq_hz for m in modes]) * (
        1 + rng.uniform(-1, 1, len(modes)) * FREQ_JITTER
    )
    damps = np.array([m.damping for m in modes]) * (
        1 + rng.uniform(-1, 1, len(modes)) * DAMPING_JITTER
    )
    amps = np.array([m.amplitude for m in modes]) * rng.uniform(0.85, 1.15, len(modes))
    strike = rng.uniform(0.6, 1.0)
    peak = PEAK * rng.uniform(0.92, 1.08)

    # Factory background, drawn before any crack so good twins share it.
    background = rng.uniform(0.004, 0.012) * pink_noise(rng, n)
    hum_level = rng.uniform(0.003, 0.012)
    hum_phase = rng.uniform(0, 2 * np.pi, 4)
    for k in range(1, 5):
        background += hum_level / k * np.sin(2 * np.pi * MAINS_HZ * k * t + hum_phase[k - 1])
    for _ in range(rng.poisson(0.8)):
        at, level = rng.uniform(0.0, DURATION_S), rng.uniform(0.05, 0.3)
        knock = _burst(rng, n, at, rng.uniform(0.004, 0.025), int(rng.integers(1, 8)))
        background += level * knock / (np.abs(knock).max() + 1e-12)
    click = _burst(rng, n, onset, 0.0008, 1)
    rattle_rng = rng.spawn(1)[0]

    if crack_length_mm is not None:
        effect = crack_effect(product, crack_length_mm, rng)
        freqs = freqs * np.array(effect.freq_factors)
        damps = damps * np.array(effect.damping_factors)
    else:
        effect = None

    tau = np.maximum(t - onset, 0.0)[:, None]
    ring = amps * np.exp(-damps * tau) * np.sin(2 * np.pi * freqs * tau)
    signal = strike * (ring.sum(axis=1) + 0.12 * click / (np.abs(click).max() + 1e-12))
    if effect is not None and effect.rattle:
        # Crack faces knocking together a few times just after the strike.
        for _ in range(int(rattle_rng.integers(2, 6))):
            at = onset + rattle_rng.uniform(0.005, 0.08)
            buzz = _burst(rattle_rng, n, at, rattle_rng.uniform(0.001, 0.004), 1)
            signal += strike * rattle_rng.uniform(0.05, 0.15) * buzz / (np.abs(buzz).max() + 1e-12)
    x = signal + background
    x *= peak / (np.abs(x).max() + 1e-12)
    return AudioClip(samples=np.clip(x, -1.0, 1.0).astype(np.float32), sample_rate=sr, kind="tap")
