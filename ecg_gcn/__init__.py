"""ecg_gcn: a CNN-BiGRU-GCN classifier of 12-lead ECGs for the PhysioNet/CinC Challenge 2020.

The contract, written once:

- input: a recording as the Challenge ships it, a WFDB header (`.hea`) and a MATLAB v4 file
  (`.mat`, key `val`, int16 ADC units, leads x samples), at any sampling rate;
- preprocessing: ADC units -> mV with each lead's gain and baseline, leads put in the standard order
  I, II, III, aVR, aVL, aVF, V1-V6 by their names (a missing lead is zeros), resampled to 500 Hz;
- output: the 27 scored SNOMED-CT codes in weights.csv order, a 0/1 label and a probability in
  [0, 1] for each; both members of an equivalent pair get the same values.
"""

from pathlib import Path

__version__ = "0.1.0"

# The repository the package sits in (installed editable): weights.csv, the dx_mapping tables and
# the official scripts live there, beside the package, as the official template places them.
ROOT = Path(__file__).resolve().parent.parent
