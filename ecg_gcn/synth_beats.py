"""Waveform model of the synthetic 12-lead ECG: a moving cardiac dipole seen from the 12 leads.

Each heartbeat is a handful of Gaussian waves of the heart vector, a vectorcardiogram (VCG): the
sum-of-Gaussians beat of McSharry et al. 2003 ("A dynamical model for generating synthetic
electrocardiogram signals", IEEE Trans. Biomed. Eng. 50:289), with a 3-D amplitude per wave instead
of a scalar one. The VCG (Frank axes: x to the patient's left, y to the feet, z to the back) is
projected onto the eight independent leads I, II, V1-V6 with the pseudo-inverse of the inverse
Dower matrix (Edenbrandt & Pahlm 1988, "Vectorcardiogram synthesized from a 12-lead ECG:
superiority of the inverse Dower matrix", J. Electrocardiol. 21:361); III, aVR, aVL and aVF are
then derived, so Einthoven's law holds exactly. Noise is made at the electrodes and goes through
the same lead arithmetic.

This module knows physiology, not labels: a `Plan` (rates, intervals, morphology) goes in, a
signal and its ground-truth fiducials come out. `ecg_gcn.synth` turns diagnosis codes into plans.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

LIMB = slice(0, 6)
CHEST = slice(6, 12)

# Inverse Dower matrix (Edenbrandt & Pahlm 1988): rows x, y, z; columns V1-V6, I, II.
INVERSE_DOWER = np.array(
    [
        [-0.172, -0.074, 0.122, 0.231, 0.239, 0.194, 0.156, -0.010],
        [0.057, -0.019, -0.106, -0.022, 0.041, 0.048, -0.227, 0.887],
        [-0.229, -0.310, -0.246, -0.063, 0.055, 0.108, 0.022, 0.102],
    ]
)
# Its pseudo-inverse maps the VCG back onto the leads (it is Dower's own matrix to 3 decimals);
# rows reordered to I, II, V1-V6.
PROJECTION = np.linalg.pinv(INVERSE_DOWER)[[6, 7, 0, 1, 2, 3, 4, 5]]

RHYTHMS = ("sinus", "af", "afl", "paced")
CONDUCTIONS = ("normal", "rbbb", "irbbb", "lbbb", "nsivcb")
T_WAVES = ("normal", "inverted", "flat", "biphasic")
VOLTAGES = ("normal", "low", "high")

SQRT_2PI = np.sqrt(2 * np.pi)


@dataclass(frozen=True)
class Plan:
    """What one record should show; times in seconds, the axis in degrees, rates per minute."""

    rhythm: str = "sinus"
    heart_rate: float = 75.0  # ventricular rate
    sinus_arrhythmia: bool = False
    pr: float = 0.16
    qrs: float = 0.09
    qtc: float = 0.40  # Bazett
    axis: float = 45.0  # frontal QRS axis of the dominant beats
    conduction: str = "normal"
    fascicular_block: bool = False  # left anterior fascicle: qR in I/aVL, rS in II/III/aVF
    q_wave: str | None = None  # "inferior" or "anterior" pathological Q
    t_wave: str = "normal"
    voltage: str = "normal"
    st_depression: bool = False
    pac: bool = False
    pvc: bool = False
    pacing: str = "VVI"  # with rhythm "paced": VVI (ventricle only) or DDD (atrium and ventricle)
    atrial_rate: float = 300.0  # flutter waves per minute
    flutter_ratio: int = 2  # flutter waves per conducted beat

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("rhythm", self.rhythm, RHYTHMS),
            ("conduction", self.conduction, CONDUCTIONS),
            ("t_wave", self.t_wave, T_WAVES),
            ("voltage", self.voltage, VOLTAGES),
            ("pacing", self.pacing, ("VVI", "DDD")),
            ("q_wave", self.q_wave, (None, "inferior", "anterior")),
        ):
            if value not in allowed:
                raise ValueError(f"Plan.{name} must be one of {allowed}, not {value!r}")


@dataclass(frozen=True)
class Waves:
    """Gaussian waves of the heart vector: centre and width (s), peak vector (mV on x, y, z)."""

    centre: np.ndarray
    sigma: np.ndarray
    vector: np.ndarray

    @staticmethod
    def of(*rows: tuple[float, float, np.ndarray | list[float]]) -> Waves:
        if not rows:
            return Waves(np.zeros(0), np.zeros(0), np.zeros((0, 3)))
        centre, sigma, vector = zip(*rows, strict=True)
        return Waves(np.array(centre, float), np.array(sigma, float), np.array(vector, float))

    def __add__(self, other: Waves) -> Waves:
        return Waves(
            np.concatenate([self.centre, other.centre]),
            np.concatenate([self.sigma, other.sigma]),
            np.concatenate([self.vector, other.vector]),
        )

    def scaled(self, factor: float) -> Waves:
        return replace(self, vector=self.vector * factor)

    def area(self) -> np.ndarray:
        """Time integral of the waves (mV s per axis): what decides the electrical axis."""
        return (self.vector * self.sigma[:, None]).sum(axis=0) * SQRT_2PI


@dataclass(frozen=True)
class Beat:
    """One beat shape: waves timed from the QRS onset, T waves timed back from the T end."""

    onset_waves: Waves  # P, QRS, ST
    end_waves: Waves  # T, placed at QRS onset + QT
    qrs: float  # duration (s)
    spike: np.ndarray | None = None  # pacing spike vector, fired 3 ms before the QRS onset


# ---------------------------------------------------------------------------------------------
# Leads


def expand_limb_leads(eight: np.ndarray) -> np.ndarray:
    """(8, n) leads I, II, V1-V6 -> (12, n) in LEADS order, by Einthoven's and Goldberger's laws."""
    lead_i, lead_ii = eight[0], eight[1]
    return np.concatenate(
        [
            np.stack(
                [
                    lead_i,
                    lead_ii,
                    lead_ii - lead_i,
                    -(lead_i + lead_ii) / 2,
                    lead_i - lead_ii / 2,
                    lead_ii - lead_i / 2,
                ]
            ),
            eight[2:],
        ]
    )


def frontal_axis(area8: np.ndarray) -> float:
    """Frontal axis (degrees) from net areas in I and II, on the hexaxial reference:
    I = E cos(axis), aVF = (sqrt(3)/2) E sin(axis)."""
    lead_i, lead_ii = area8[0], area8[1]
    avf = lead_ii - lead_i / 2
    return float(np.degrees(np.arctan2(2 * avf / np.sqrt(3), lead_i)))


def _record_projection(rng: np.random.Generator) -> np.ndarray:
    """Dower's projection with chest electrodes a little off their textbook places."""
    jitter = np.ones_like(PROJECTION)
    jitter[2:] += rng.normal(0, 0.08, size=(6, 3))
    return PROJECTION * jitter


# ---------------------------------------------------------------------------------------------
# Beat shapes


def _unit(v: list[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _jitter(rng: np.random.Generator, vector: list[float], spread: float = 0.08) -> np.ndarray:
    """A textbook vector made patient-specific, its size kept."""
    v = np.asarray(vector, float)
    return v + rng.normal(0, spread, 3) * np.linalg.norm(v)


def _rotate_frontal(vectors: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate in the x-y (frontal) plane; positive turns towards the feet, as the axis does."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    out = vectors.copy()
    out[:, 0] = c * vectors[:, 0] - s * vectors[:, 1]
    out[:, 1] = s * vectors[:, 0] + c * vectors[:, 1]
    return out


def _p_waves(rng: np.random.Generator, pr: float, amplitude: float) -> Waves:
    """Sinus P: right atrium (down, forwards) then left atrium (left, backwards): biphasic in V1."""
    duration = rng.uniform(0.085, 0.11)
    sigma = duration / 7  # onset and end at 2.5 sigma from the two centres
    onset = -pr
    return Waves.of(
        (onset + 2.5 * sigma, sigma, amplitude * _jitter(rng, [0.02, 0.13, -0.07])),
        (onset + 4.5 * sigma, sigma, amplitude * _jitter(rng, [0.10, 0.08, 0.07])),
    )


def _ectopic_p_wave(rng: np.random.Generator, pr: float, amplitude: float) -> Waves:
    """A P from an atrial focus away from the sinus node: one wave, pointing elsewhere."""
    direction = [
        [0.05, -0.14, 0.02],  # low atrium: P inverted in II, III, aVF
        [-0.10, 0.10, 0.06],  # left atrium: P negative in I
        [0.02, 0.16, -0.12],  # high right atrium: tall, peaked P
    ][rng.integers(3)]
    sigma = rng.uniform(0.010, 0.014)
    return Waves.of((-pr + 2.5 * sigma, sigma, amplitude * _jitter(rng, direction)))


# QRS patterns: (centre, sigma) as fractions of the QRS duration, a vector, and whether the wave
# belongs to the main left-ventricular forces that set the frontal axis. The main forces point
# along +x here and are rotated onto the record's axis; onset and end sit 2.5 sigma from the
# first and last centre, so the duration is what a threshold at a few percent would measure.
_QRS_PATTERNS: dict[str, tuple[tuple[float, float, list[float], bool], ...]] = {
    # septum left-to-right and forwards (q in I, V6; r in V1), free wall, then the basal
    # terminal force
    "normal": (
        (0.16, 0.064, [-0.12, 0.06, -0.22], False),
        (0.45, 0.12, [1.0, 0.0, 0.35], True),
        (0.76, 0.085, [-0.22, -0.15, 0.30], False),
    ),
    # a slurred, late wave: normal activation that takes longer without a bundle branch pattern
    "nsivcb": (
        (0.14, 0.056, [-0.12, 0.06, -0.22], False),
        (0.40, 0.11, [1.0, 0.0, 0.35], True),
        (0.66, 0.10, [0.35, 0.0, 0.25], True),
        (0.84, 0.064, [-0.20, -0.12, 0.25], False),
    ),
    # the right ventricle late: terminal force right and forwards -> rsR' in V1, wide S in I, V6
    "rbbb": (
        (0.11, 0.044, [-0.12, 0.06, -0.22], False),
        (0.33, 0.10, [1.0, 0.0, 0.30], True),
        (0.73, 0.105, [-0.55, 0.05, -0.62], False),
    ),
    # the septum right-to-left: no q in I, V6; two leftward posterior humps -> notched R, QS in V1
    "lbbb": (
        (0.20, 0.08, [0.30, 0.05, 0.30], False),
        (0.43, 0.11, [0.85, 0.0, 0.85], True),
        (0.72, 0.11, [0.75, 0.0, 0.80], True),
    ),
    # an ectopic ventricular focus: two broad, slow humps (turned to a random direction)
    "pvc": (
        (0.33, 0.13, [1.0, 0.0, 0.40], True),
        (0.70, 0.12, [0.55, 0.35, -0.45], True),
    ),
}
_QRS_PATTERNS["irbbb"] = _QRS_PATTERNS["rbbb"]
# initial forces down and to the right: q in I and aVL, r in II, III, aVF
_FASCICULAR_SEPTUM = [-0.08, 0.16, -0.12]


def _qrs_waves(
    rng: np.random.Generator, pattern: str, duration: float, size: float
) -> tuple[Waves, np.ndarray]:
    """The QRS waves of a pattern and a mask of its main (axis-setting) waves."""
    rows = []
    main = []
    for centre, sigma, vector, is_main in _QRS_PATTERNS[pattern]:
        rows.append((centre * duration, sigma * duration, size * _jitter(rng, vector)))
        main.append(is_main)
    waves = Waves.of(*rows)
    if pattern == "irbbb":  # the same late right forces, smaller and sooner over
        waves.vector[-1] *= 0.6
    return waves, np.array(main)


def _aim_axis(
    waves: Waves, main: np.ndarray, target: float, projection: np.ndarray
) -> tuple[Waves, float]:
    """Turn the main forces in the frontal plane so that the whole QRS has the target axis.

    The leads do not see x and y alike (Dower's matrix), so the turn is searched on a
    half-degree grid: the net area is linear in the turned vectors, which makes that cheap.
    """
    turns = np.arange(0.0, 360.0, 0.5)
    main_area = Waves(waves.centre[main], waves.sigma[main], waves.vector[main]).area()
    rest_area = waves.area() - main_area
    c, s = np.cos(np.radians(turns)), np.sin(np.radians(turns))
    areas = np.empty((turns.size, 3))
    areas[:, 0] = c * main_area[0] - s * main_area[1] + rest_area[0]
    areas[:, 1] = s * main_area[0] + c * main_area[1] + rest_area[1]
    areas[:, 2] = main_area[2] + rest_area[2]
    seen = areas @ projection[:2].T  # net area in I and II
    avf = seen[:, 1] - seen[:, 0] / 2
    axes = np.degrees(np.arctan2(2 * avf / np.sqrt(3), seen[:, 0]))
    best = int(np.argmin(np.abs((axes - target + 180) % 360 - 180)))
    vector = waves.vector.copy()
    vector[main] = _rotate_frontal(waves.vector[main], turns[best])
    return replace(waves, vector=vector), float(axes[best])


_Q_LEADS = {"inferior": [1, 2, 5], "anterior": [6, 7, 8, 9]}  # II, III, aVF; V1-V4


def _add_q_wave(
    rng: np.random.Generator,
    waves: Waves,
    main: np.ndarray,
    kind: str,
    duration: float,
    projection: np.ndarray,
) -> Waves:
    """Pathological Q: early forces away from dead myocardium, on average as deep as two fifths
    to seven tenths of the tallest R that follows in its leads (plus 0.1 mV).

    The Q replaces the septal wave. Inferior infarct: early forces go up (Q in II, III, aVF),
    still a little right and forwards (r in V1); anterior: backwards (Q in V1-V4), a little
    down (r in III, aVF). The rest of the QRS is squeezed into the time left after the Q, so the
    R does not swallow the Q and the QRS keeps its duration.
    """
    sigma = rng.uniform(0.008, 0.010)
    shift = 2.0 * sigma
    squeeze = (duration - shift) / duration
    leads = _Q_LEADS[kind]
    main_waves = Waves(waves.centre[main], waves.sigma[main], waves.vector[main])
    r_wave = _single_beat_p2p(main_waves, projection, positive=True)[leads].max()
    vector = [-0.15, -1.0, -0.5] if kind == "inferior" else [0.05, 0.45, 1.0]
    direction = _jitter(rng, vector, 0.05)
    seen = -expand_limb_leads(projection @ direction[:, None])[leads, 0].mean()
    depth = (rng.uniform(0.4, 0.7) * r_wave + 0.1) / seen
    keep = np.arange(main.size) > 0
    rest = Waves(
        shift + squeeze * waves.centre[keep], squeeze * waves.sigma[keep], waves.vector[keep]
    )
    return Waves.of((2.5 * sigma, sigma, depth * direction)) + rest


def _single_beat_p2p(waves: Waves, projection: np.ndarray, positive: bool = False) -> np.ndarray:
    """Peak-to-peak (mV) of the waves in each of the 12 leads, sampled at 1 kHz (or the
    positive peak only)."""
    start = (waves.centre - 3 * waves.sigma).min()
    stop = (waves.centre + 3 * waves.sigma).max()
    t = np.arange(start, stop, 0.001)
    shape = np.exp(-0.5 * ((t[None, :] - waves.centre[:, None]) / waves.sigma[:, None]) ** 2)
    leads = expand_limb_leads(projection @ (waves.vector.T @ shape))
    return leads.max(axis=1) if positive else np.ptp(leads, axis=1)


def _voltage_scale(
    rng: np.random.Generator, qrs: Waves, voltage: str, projection: np.ndarray
) -> float:
    """Factor on the QRS so its size matches the plan: low voltage needs every limb lead under
    0.5 mV and every chest lead under 1.0 mV; high (LVH) a chest lead over 3 mV; normal neither.
    """
    p2p = _single_beat_p2p(qrs, projection)
    limb, chest = p2p[LIMB].max(), p2p[CHEST].max()
    if voltage == "low":
        return min(rng.uniform(0.25, 0.42) / limb, rng.uniform(0.55, 0.88) / chest)
    if voltage == "high":
        return rng.uniform(3.2, 4.2) / chest
    scale = max(1.0, 0.7 / limb, 1.3 / chest)
    return min(scale, 2.6 / chest)


def _t_waves(rng: np.random.Generator, vector: np.ndarray, shape: str, sigma: float) -> Waves:
    """T waves timed back from the T end (0): a main wave and a slower upstroke before it.

    The end is 2 sigma after the main wave's peak, where the tangent at its steepest descent
    meets the baseline: the clinical (tangent) QT measurement.
    """
    centre = -2.0 * sigma
    if shape == "biphasic":  # positive then negative half, same end
        return Waves.of(
            (centre - 1.6 * sigma, 0.8 * sigma, 0.9 * vector),
            (centre + 0.4 * sigma, 0.8 * sigma, -0.9 * vector),
        )
    if shape == "flat":  # a tenth of the R or less
        vector = vector * rng.uniform(0.0, 0.05)
    elif shape == "inverted":
        vector = -vector * rng.uniform(0.8, 1.3)
    return Waves.of(
        (centre - 1.2 * sigma, 1.3 * sigma, 0.3 * vector),
        (centre, sigma, vector),
    )


def _st_wave(qrs: float, vector: np.ndarray) -> Waves:
    """A dome over the ST segment: depression or, after a wide QRS, discordant displacement."""
    return Waves.of((qrs + 0.06, 0.035, vector))


def _normal_t_vector(rng: np.random.Generator) -> np.ndarray:
    # left, down, a little forwards: upright in I, II, V2-V6, small in V1, inverted in aVR.
    # Sized to real sinus-rhythm recordings: on the 31 of ../shared/real_sample with NSR alone,
    # T in II is 0.10-0.33 mV (10th-90th centile, median 0.17) and the median T/QRS ratio over
    # the leads 0.26; twice as tall, the simulator's normal T made real normals look flat (TAb)
    # to a network trained on it (BENCHMARKS.md, "New hospitals").
    return rng.uniform(0.35, 1.15) * _jitter(rng, [0.36, 0.10, -0.10], 0.12)


def _discordant_t_vector(rng: np.random.Generator, qrs: Waves) -> np.ndarray:
    # after a wide QRS repolarisation follows depolarisation: ST-T against the QRS
    return -rng.uniform(0.22, 0.32) * _unit(qrs.area()) * np.abs(qrs.vector).max()


@dataclass(frozen=True)
class Shapes:
    """The beat shapes of one record and the ground truth they were built to."""

    beats: dict[str, Beat]
    axis: float
    qrs_p2p: np.ndarray  # of the dominant beat, per lead


def build_beats(rng: np.random.Generator, plan: Plan, projection: np.ndarray) -> Shapes:
    """Beat shapes of one record: 'N' dominant, 'A' premature atrial, 'V' premature ventricular.

    Paced records use 'N' for the paced beat, its spike included.
    """
    size = rng.uniform(0.9, 1.7)
    paced = plan.rhythm == "paced"
    pattern = "lbbb" if paced else plan.conduction
    qrs, main = _qrs_waves(rng, pattern, plan.qrs, size)
    if plan.fascicular_block and not paced:
        qrs.vector[0] = size * _jitter(rng, _FASCICULAR_SEPTUM)
    qrs, axis = _aim_axis(qrs, main, plan.axis, projection)
    if plan.q_wave and not paced:  # sized against the R of the record's axis, then re-aimed
        qrs = _add_q_wave(rng, qrs, main, plan.q_wave, plan.qrs, projection)
        main = np.concatenate([[False], main[1:]])
        qrs, axis = _aim_axis(qrs, main, plan.axis, projection)
    scale = _voltage_scale(rng, qrs, plan.voltage, projection)
    qrs = qrs.scaled(scale)
    small = min(1.0, np.sqrt(scale))  # P and T shrink with low voltages, less than the QRS

    wide = paced or plan.conduction == "lbbb"
    t_vector = _t_vector(rng, qrs, wide, plan.conduction)
    t_shape = plan.t_wave
    if plan.t_wave == "inverted" and wide:
        t_shape = "normal"  # already against the QRS: negative in I, aVL, V5, V6
        t_vector = t_vector * rng.uniform(1.0, 1.3)
    elif plan.t_wave == "inverted":
        t_vector = _normal_t_vector(rng)  # inverted where the T is upright: I, II, V3-V6
    t_waves = _t_waves(rng, small * t_vector, t_shape, rng.uniform(0.038, 0.05))

    ventricular = qrs
    if wide:
        ventricular = ventricular + _st_wave(plan.qrs, 0.4 * small * t_vector)
    if plan.st_depression:
        depth = rng.uniform(0.1, 0.22)
        ventricular = ventricular + _st_wave(
            plan.qrs, -depth * _jitter(rng, [0.65, 0.72, -0.15], 0.05)
        )
    p_amplitude = small * rng.uniform(0.8, 1.4)
    if plan.rhythm == "sinus":
        dominant = Beat(ventricular + _p_waves(rng, plan.pr, p_amplitude), t_waves, plan.qrs)
    elif paced and plan.pacing == "DDD":  # the P follows the atrial spike
        atrial = _p_waves(rng, plan.pr - 0.02, p_amplitude)
        dominant = Beat(ventricular + atrial, t_waves, plan.qrs, _pacing_spike(rng, projection))
    elif paced:
        dominant = Beat(ventricular, t_waves, plan.qrs, _pacing_spike(rng, projection))
    else:  # fibrillation or flutter: atrial activity is drawn separately
        dominant = Beat(ventricular, t_waves, plan.qrs)
    beats = {"N": dominant}
    if plan.pac:
        ectopic_p = _ectopic_p_wave(rng, plan.pr * rng.uniform(0.85, 1.0), p_amplitude)
        beats["A"] = Beat(ventricular + ectopic_p, t_waves, plan.qrs)
    if plan.pvc:
        beats["V"] = _pvc_beat(rng, scale * size, small, plan.qrs)
    return Shapes(beats, axis, _single_beat_p2p(qrs, projection))


def _t_vector(rng: np.random.Generator, qrs: Waves, wide: bool, conduction: str) -> np.ndarray:
    if wide:
        return _discordant_t_vector(rng, qrs)
    if conduction in ("rbbb", "irbbb"):
        # secondary to the late right forces: inverted in V1-V3, upright in I, V5, V6
        return rng.uniform(0.75, 1.3) * _jitter(rng, [0.30, 0.18, 0.22], 0.1)
    return _normal_t_vector(rng)


def _pvc_beat(rng: np.random.Generator, size: float, small: float, dominant_qrs: float) -> Beat:
    """A ventricular ectopic: no P, wide bizarre QRS from a random focus, T against it."""
    duration = max(rng.uniform(0.13, 0.18), dominant_qrs + 0.02)
    qrs, _ = _qrs_waves(rng, "pvc", duration, size * rng.uniform(1.2, 1.8))
    turn = _random_rotation(rng)
    qrs = replace(qrs, vector=qrs.vector @ turn.T)
    t_vector = _discordant_t_vector(rng, qrs) * 1.3
    t_waves = _t_waves(rng, small * t_vector, "normal", rng.uniform(0.045, 0.06))
    return Beat(qrs + _st_wave(duration, 0.4 * small * t_vector), t_waves, duration)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _pacing_spike(rng: np.random.Generator, projection: np.ndarray) -> np.ndarray:
    """A pacing spike's vector: 1.5-5 mV in the lead that sees it best (unipolar-like)."""
    direction = _unit(rng.normal(size=3) + np.array([0.3, -0.6, 0.2]))
    seen = np.abs(expand_limb_leads(projection @ direction[:, None])).max()
    return direction * rng.uniform(1.5, 5.0) / seen


# ---------------------------------------------------------------------------------------------
# Rhythm: QRS onset times and beat kinds


def _sinus_onsets(
    rng: np.random.Generator, rate: float, seconds: float, arrhythmia: bool
) -> np.ndarray:
    """Sinus node firing: RR modulated by breathing (0.15-0.4 Hz) plus a little jitter.

    Sinus arrhythmia swings RR by 180-360 ms peak to peak; a normal record by under 50 ms
    (plus a few ms of jitter).
    """
    rr0 = 60.0 / rate
    count = int(np.ceil((seconds + 3.0) / (rr0 * 0.75))) + 2
    approx = np.arange(count) * rr0
    breath = max(rng.uniform(0.15, 0.4), 1.2 / seconds)
    if arrhythmia:
        swing = rng.uniform(0.09, 0.18)
        jitter = rng.uniform(0.003, 0.01)
    else:
        swing = rng.uniform(0.0, 0.025)
        jitter = rng.uniform(0.003, 0.008)
    rr = rr0 + swing * np.sin(2 * np.pi * breath * approx + rng.uniform(0, 2 * np.pi))
    rr = rr + rng.normal(0, jitter, count)
    return -rng.uniform(0.3, 1.5) + np.cumsum(np.maximum(rr, 0.25))


def _fibrillation_onsets(rng: np.random.Generator, rate: float, seconds: float) -> np.ndarray:
    """AV node under fibrillation: independent RR intervals, coefficient of variation 15-30 %,
    their mean within the record set to the planned rate (a short strip would otherwise miss
    it by chance, and Brady or a normal rate would be wrong)."""
    rr0 = 60.0 / rate
    count = int(np.ceil((seconds + 3.0) / (0.7 * rr0))) + 2
    cv = rng.uniform(0.15, 0.3)
    rr = rr0 * np.maximum(rng.lognormal(0, cv, count), 0.3 / rr0)
    start = -rng.uniform(0.3, 1.5)
    for _ in range(4):  # rescaling moves beats in and out of the record: repeat a few times
        onsets = start + np.cumsum(rr)
        inside = np.flatnonzero((onsets >= 0) & (onsets < seconds))
        if inside.size < 2:  # a strip shorter than one beat: no interval to set
            break
        rr *= rr0 / np.diff(onsets[inside]).mean()
    return start + np.cumsum(rr)


def _regular_onsets(rng: np.random.Generator, period: float, seconds: float) -> np.ndarray:
    """A clock: a pacemaker, or flutter waves conducted at a fixed ratio."""
    start = -rng.uniform(0.3, 1.5)
    count = int(np.ceil((seconds - start + 1.0) / period)) + 1
    return start + np.arange(count) * period + rng.normal(0, 0.001, count)


def _insert_ectopics(
    rng: np.random.Generator,
    onsets: np.ndarray,
    kinds: np.ndarray,
    kind: str,
    seconds: float,
    resets: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Make some dominant beats premature ectopics of `kind` (at least one inside the record).

    A PAC resets the sinus node, so the pause after it is not compensatory (`resets`); a PVC
    leaves the sinus node alone, so the next beat comes when it would have (fully compensatory).
    """
    onsets, kinds = onsets.copy(), kinds.copy()
    # both neighbours inside the record, so that the coupling and the pause can be seen
    inner = (onsets[:-2] > 0.3) & (onsets[2:] < seconds - 0.4)
    free = (kinds[1:-1] == "N") & (kinds[:-2] == "N") & (kinds[2:] == "N")
    candidates = np.flatnonzero(inner & free) + 1
    if candidates.size == 0:
        return onsets, kinds
    if rng.random() < 0.1:  # bigeminy: every other beat
        chosen = candidates[(candidates - candidates[0]) % 2 == 0]
    else:
        count = int(np.clip(rng.poisson(seconds * rng.uniform(0.06, 0.2)), 1, 6))
        chosen = np.sort(rng.choice(candidates, min(count, candidates.size), replace=False))
    chosen = chosen[np.concatenate([[True], np.diff(chosen) >= 2])]  # never two in a row
    for i in chosen:
        rr = onsets[i] - onsets[i - 1]
        early = onsets[i - 1] + rng.uniform(0.55, 0.72) * rr
        if resets:
            next_rr = (onsets[i + 1] - onsets[i]) * rng.uniform(1.0, 1.08)
            onsets[i + 1 :] += early + next_rr - onsets[i + 1]
        onsets[i] = early
        kinds[i] = kind
    return onsets, kinds


def schedule(
    rng: np.random.Generator, plan: Plan, seconds: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """QRS onset times (s, some before 0 and after the end), beat kinds, and the flutter phase."""
    flutter_start = 0.0
    if plan.rhythm == "af":
        onsets = _fibrillation_onsets(rng, plan.heart_rate, seconds)
    elif plan.rhythm == "afl":
        period = 60.0 / plan.atrial_rate
        onsets = _regular_onsets(rng, period * plan.flutter_ratio, seconds)
        # conduction through the AV node takes a fixed time after a flutter wave
        flutter_start = onsets[0] - rng.uniform(0.15, 0.25)
    elif plan.rhythm == "paced":
        onsets = _regular_onsets(rng, 60.0 / plan.heart_rate, seconds)
    else:
        onsets = _sinus_onsets(rng, plan.heart_rate, seconds, plan.sinus_arrhythmia)
    kinds = np.full(onsets.size, "N")
    if plan.pac and plan.rhythm == "sinus":
        onsets, kinds = _insert_ectopics(rng, onsets, kinds, "A", seconds, resets=True)
    if plan.pvc:
        resets = plan.rhythm == "paced"  # a pacemaker senses the PVC and restarts its clock
        onsets, kinds = _insert_ectopics(rng, onsets, kinds, "V", seconds, resets=resets)
    return onsets, kinds, flutter_start


# ---------------------------------------------------------------------------------------------
# Rendering


def render_waves(waves: Waves, n: int, fs: float) -> np.ndarray:
    """Sum of Gaussian waves sampled at fs over n samples: (3, n).

    Each wave is evaluated only within 4 sigma of its centre and accumulated with bincount.
    """
    out = np.zeros((3, n))
    reach = waves.centre + 4 * waves.sigma
    keep = (reach > 0) & (waves.centre - 4 * waves.sigma < n / fs)
    if not keep.any():
        return out
    centre, sigma, vector = waves.centre[keep], waves.sigma[keep], waves.vector[keep]
    half = int(np.ceil(4 * sigma.max() * fs))
    index = np.rint(centre * fs).astype(np.int64)[:, None] + np.arange(-half, half + 1)
    shape = np.exp(-0.5 * ((index / fs - centre[:, None]) / sigma[:, None]) ** 2)
    inside = (index >= 0) & (index < n)
    index = index[inside]
    for axis in range(3):
        weights = (shape * vector[:, axis, None])[inside]
        out[axis] = np.bincount(index, weights=weights, minlength=n)
    return out


def _place_beats(
    beats: dict[str, Beat], onsets: np.ndarray, kinds: np.ndarray, qtc: float
) -> tuple[Waves, np.ndarray]:
    """All waves of the record on one time line, and the QT of each beat.

    QT follows the preceding RR by Bazett (QT = QTc sqrt(RR)), never shorter than the QRS plus
    room for the ST segment and T.
    """
    rr = np.diff(onsets, prepend=onsets[0] - (onsets[1] - onsets[0]))
    qt = qtc * np.sqrt(np.clip(rr, 0.3, 2.0))
    parts = []
    for kind, beat in beats.items():
        mine = kinds == kind
        if not mine.any():
            continue
        qt[mine] = np.maximum(qt[mine], beat.qrs + 0.17)
        t0 = onsets[mine]
        for waves, start in ((beat.onset_waves, t0), (beat.end_waves, t0 + qt[mine])):
            parts.append(
                Waves(
                    (start[:, None] + waves.centre[None, :]).ravel(),
                    np.tile(waves.sigma, t0.size),
                    np.tile(waves.vector, (t0.size, 1)),
                )
            )
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total, qt


def _impulses(
    times: np.ndarray, vector: np.ndarray, n: int, fs: float, recovery: float = 0.3
) -> np.ndarray:
    """Pacing spikes: one sample of full height and one of reverse recovery, under 2 ms at
    500 Hz and above."""
    out = np.zeros((3, n))
    index = np.rint(times * fs).astype(np.int64)
    for shift, height in ((0, 1.0), (1, -recovery)):
        at = index + shift
        at = at[(at >= 0) & (at < n)]
        out[:, at] += height * vector[:, None]
    return out


def _fibrillation_waves(rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    """Fibrillatory waves: two oscillations wandering over about 4.5-8 Hz, 0.05-0.2 mV, best
    seen in V1 and II."""
    t = np.arange(n) / fs
    out = np.zeros((3, n))
    directions = ([-0.25, 0.35, -0.9], [0.1, 0.8, -0.4])
    for direction in directions:
        f0 = rng.uniform(5.0, 7.5)
        drift, rate = rng.uniform(0.2, 0.6), rng.uniform(0.05, 0.25)
        phase = 2 * np.pi * f0 * t - (drift / rate) * np.cos(
            2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)
        )
        envelope = 1 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6.3))
        wave = envelope * (np.sin(phase) + 0.2 * np.sin(2 * phase + rng.uniform(0, 6.3)))
        out += np.outer(rng.uniform(0.04, 0.11) * _unit(direction), wave)
    return out


def _flutter_waves(
    rng: np.random.Generator, atrial_rate: float, start: float, n: int, fs: float
) -> np.ndarray:
    """Typical flutter: a sawtooth at the atrial rate, slow fall and quick rise, negative in the
    inferior leads and positive in V1. A Lanczos-smoothed Fourier series keeps it band-limited.
    """
    t = np.arange(n) / fs
    phase = 2 * np.pi * (atrial_rate / 60.0) * (t - start)
    harmonics = np.arange(1, 7)
    weights = np.sinc(harmonics / 7) / harmonics
    saw = (weights[:, None] * np.sin(np.outer(harmonics, phase))).sum(axis=0)
    saw /= np.abs(saw).max()
    return np.outer(rng.uniform(0.08, 0.2) * _jitter(rng, [0.05, 1.0, 0.45], 0.05), saw)


_ELECTRODES = 9  # RA, LA, LL, V1-V6


def electrode_noise(rng: np.random.Generator, n: int, fs: float, level: float) -> np.ndarray:
    """Noise made at the electrodes, seen through the lead arithmetic: (8, n) in I, II, V1-V6.

    Baseline wander (0.05-0.5 Hz, breathing and movement), mains hum (50 or 60 Hz) and broadband
    muscle noise, each with its own random size; `level` scales all three (0 turns noise off).
    """
    if level <= 0:
        return np.zeros((8, n))
    t = np.arange(n) / fs
    size = level * np.array([rng.uniform(0.02, 0.2), rng.uniform(0.0, 0.03)])
    freq = rng.uniform(0.05, 0.5, (_ELECTRODES, 2))
    phase = rng.uniform(0, 2 * np.pi, (_ELECTRODES, 2, 1))
    amp = size[0] * rng.uniform(0.2, 1.0, (_ELECTRODES, 2, 1))
    # under 0.5 Hz: computed on a 25 Hz grid and interpolated, the sines being the slow part
    step = max(1, int(fs // 25))
    coarse_t = np.arange(0, n + 2 * step, step) / fs
    coarse = (amp * np.sin(2 * np.pi * freq[:, :, None] * coarse_t + phase)).sum(axis=1)
    where = np.arange(n) / step
    left = where.astype(np.int64)
    frac = where - left
    wander = coarse[:, left] * (1 - frac) + coarse[:, left + 1] * frac
    wander += rng.uniform(-0.2, 0.2, (_ELECTRODES, 1)) * level  # electrode offsets
    mains = 2 * np.pi * (50.0 if rng.random() < 0.6 else 60.0) * t + rng.uniform(0, 2 * np.pi)
    skew = rng.normal(0, 0.3, _ELECTRODES)  # the hum reaches each electrode a little late
    hum_amp = size[1] * rng.uniform(0.3, 1.0, _ELECTRODES)
    hum = np.outer(hum_amp * np.cos(skew), np.sin(mains)) + np.outer(
        hum_amp * np.sin(skew), np.cos(mains)
    )
    muscle_sd = level * rng.uniform(0.003, 0.025) * rng.uniform(0.3, 1.0, (_ELECTRODES, 1))
    muscle = muscle_sd * rng.standard_normal((_ELECTRODES, n))
    at = wander + hum + muscle
    ra, la, ll, chest = at[0], at[1], at[2], at[3:]
    central = (ra + la + ll) / 3  # Wilson's central terminal
    return np.concatenate([np.stack([la - ra, ll - ra]), chest - central])


def render(
    rng: np.random.Generator, plan: Plan, fs: float, seconds: float, noise: float = 1.0
) -> tuple[np.ndarray, dict]:
    """The 12-lead signal (mV, LEADS order, (12, n)) of a plan, and its ground truth."""
    n = round(fs * seconds)
    projection = _record_projection(rng)
    shapes = build_beats(rng, plan, projection)
    onsets, kinds, flutter_start = schedule(rng, plan, seconds)
    waves, qt = _place_beats(shapes.beats, onsets, kinds, plan.qtc)
    vcg = render_waves(waves, n, fs)
    if plan.rhythm == "af":
        vcg += _fibrillation_waves(rng, n, fs)
    elif plan.rhythm == "afl":
        vcg += _flutter_waves(rng, plan.atrial_rate, flutter_start, n, fs)
    elif plan.rhythm == "paced":
        spike = shapes.beats["N"].spike
        paced = onsets[kinds == "N"]
        vcg += _impulses(paced - 0.003, spike, n, fs)
        if plan.pacing == "DDD":
            vcg += _impulses(paced - plan.pr, 0.7 * spike, n, fs)  # 20 ms before the P
    signal = expand_limb_leads(projection @ vcg + electrode_noise(rng, n, fs, noise))

    inside = (onsets >= 0) & (onsets < seconds)
    in_onsets = onsets[inside]
    rr = np.diff(in_onsets)
    mean_rr = float(rr.mean()) if rr.size else 60.0 / plan.heart_rate
    dominant_qt = qt[inside & (kinds == "N")]
    qt_ms = float(np.median(dominant_qt) * 1000) if dominant_qt.size else float("nan")
    has_p = plan.rhythm == "sinus" or (plan.rhythm == "paced" and plan.pacing == "DDD")
    info = {
        "rhythm": plan.rhythm,
        "heart_rate": 60.0 / mean_rr,
        "beat_onsets": in_onsets,
        "beat_kinds": "".join(kinds[inside]),
        "pr_ms": plan.pr * 1000 if has_p else None,
        "qrs_ms": plan.qrs * 1000,
        "qt_ms": qt_ms,
        "qtc_ms": qt_ms / np.sqrt(mean_rr),
        "axis_deg": shapes.axis,
        "qrs_p2p_mv": shapes.qrs_p2p,
        "plan": plan,
    }
    return signal, info
