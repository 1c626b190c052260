"""`b12lab synth`: a realistic synthetic export set in the input contract (README.md, "Input: what the drop
folder may hold"; the sample it aims at: README.md, "Command line", `synth`).

The generator builds a population of patients with hidden clinical states (pernicious anaemia, other B12
deficiency, people on supplements, macrocytosis from other causes, everybody else), lets them visit their GP
and the hospital, orders tests the way clinicians do (routine panels, a diagnostic work-up, follow-up after
treatment that is on time, late or never, MMA/holoTC reflexed after borderline B12), measures every test from
the patient's state on that day, and finally lets three laboratories report the results each in their own way
(units, codes, reference ranges, censoring, time stamps, corrected/preliminary/cancelled results, duplicates and
a small share of damaged rows). Registry files (patients, diagnoses, medications) come from the same hidden
states, so the pipeline's cohorts have true answers.

Everything is vectorised with numpy over whole columns; strings are only built at the end, column by column,
with pyarrow compute, and written as contiguous buffers. The only Python loops run over analytes, sites, files
and output chunks. The same seed gives byte-identical files (numpy's PCG64 stream, gzip without a time stamp).

No function here logs a patient identifier.
"""

from __future__ import annotations

import functools
import gzip
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

LAB_COLUMNS = ("patient_id", "accession", "loinc", "local_code", "test_name", "result_value", "unit",
               "reference_range", "abnormal_flag", "status", "collected_at", "resulted_at", "performing_lab")
PATIENT_COLUMNS = ("patient_id", "birth_date", "sex", "practice", "death_date")
DIAGNOSIS_COLUMNS = ("patient_id", "code_system", "code", "recorded_at")
MEDICATION_COLUMNS = ("patient_id", "drug", "atc_code", "route", "dose", "start_date", "end_date")

# --------------------------------------------------------------------------------------------------------------
# Calibration, fitted by benchmarks/calibrate_synth.py on the NHANES files in tests/data/nhanes/
# (CDC public-use laboratory files, as packaged in nhanesdata 1.1.1). Blank rows and values <= 0 were dropped.
# Each *_LOG_QUANTILES tuple holds quantiles of the natural log of the value at QUANTILE_PROBS (0 and 1 are the
# observed min and max, so the real extreme tail is kept). Sampling is inverse-CDF, interpolated in log space.
#
# B12, pmol/L: B12_D.csv:LBDB12SI n=8049 + L06NB_C.csv:LBDB12SI n=8267 + VITB12_H.csv:LBDB12SI n=5316 = 21632.
#   log-normal fit: mean(log)=5.9839, sd(log)=0.5085 (geometric mean 397.0); median 391.1, IQR 287.1-538.7,
#   robust sd(log)=0.4666; share <150: 2.0%, 150-258: 16.0%, >1476: 0.93%.
# MMA, umol/L: L06MH_C.csv:LBXMMA n=7544 + MMA_G.csv:LBXMMASI/1000 n=4880 + MMA_H.csv:LBXMMASI/1000 n=5444 =
#   17868. log-normal fit: mean(log)=-1.9835, sd(log)=0.4943; median 0.130, IQR 0.100-0.175; share >0.40: 3.1%.
# Homocysteine, umol/L: L06MH_C.csv:LBXHCY n=7888 + HCY_D.csv:LBXHCY n=4490 = 12378; mean(log)=1.9972,
#   sd(log)=0.4061; median 7.31.
# Folate, nmol/L: L06NB_C.csv:LBDFOLSI n=8268 + FOLATE_D.csv:LBDFOLSI n=8143 = 16411; mean(log)=3.3222,
#   sd(log)=0.4936; median 27.6.
# MMA and homocysteine depend on B12 through a hinge regression on log B12 (knot 250 pmol/L), fitted on the
# participants measured for both: L06NB_C x L06MH_C (n=7497) and VITB12_H x MMA_H (n=5309) for MMA, n=12806,
# corr(log B12, log MMA)=-0.28, residual sd 0.463; L06NB_C x L06MH_C (n=7830) and B12_D x HCY_D (n=4371) for
# homocysteine, n=12201, corr=-0.31, residual sd 0.385. Residuals are sampled from their own quantiles.
# --------------------------------------------------------------------------------------------------------------
QUANTILE_PROBS = np.array((0.0, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5,
                           0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 1.0))
B12_LOG_QUANTILES = np.array((2.5878, 4.1723, 4.6590, 4.8201, 5.0528, 5.2118, 5.3864, 5.5851, 5.7293, 5.8490,
                              5.9691, 6.0864, 6.2168, 6.3670, 6.5918, 6.7941, 6.9831, 7.2732, 7.6318, 8.9128,
                              10.8553))
FOLATE_LOG_QUANTILES = np.array((0.4700, 1.7546, 2.0412, 2.1748, 2.3609, 2.5416, 2.7213, 2.9232, 3.0681, 3.2068,
                                 3.3178, 3.4340, 3.5582, 3.6964, 3.9220, 4.1352, 4.3202, 4.6480, 4.8519, 5.4327,
                                 7.3528))
# NHANES samples the general population; a health system's lab export holds patients whose B12 was ordered
# on suspicion, whose median is lower. The fitted shape is kept and the location moved so the median is the
# 350 pmol/L the sample data aims at (README.md, "Command line", `synth`): every quantile shifts by
# ln(350 / 391.1) = -0.1111.
B12_TESTED_POPULATION_LOG_SHIFT = float(np.log(350.0 / 391.1))
HINGE_B12_PMOL_L = 250.0
MMA_ON_B12 = (-1.1956, -0.1405, 0.8824)  # intercept, slope on log B12, extra slope below the hinge
MMA_RESIDUAL_QUANTILES = np.array((-1.7970, -1.3501, -1.1043, -0.9392, -0.7891, -0.6645, -0.5282, -0.3656,
                                   -0.2447, -0.1383, -0.0402, 0.0664, 0.1824, 0.3255, 0.5670, 0.8048, 1.0210,
                                   1.4061, 1.6773, 2.3464, 3.9442))
HCY_ON_B12 = (3.1925, -0.2039, 0.2420)
HCY_RESIDUAL_QUANTILES = np.array((-1.5734, -1.2756, -1.0038, -0.8800, -0.7397, -0.6103, -0.4707, -0.3090,
                                   -0.1936, -0.0989, -0.0077, 0.0832, 0.1805, 0.2940, 0.4694, 0.6220, 0.7917,
                                   1.0253, 1.2119, 1.7346, 2.9060))

# --------------------------------------------------------------------------------------------------------------
# Assumptions not in NHANES (a general-population survey with no clinical PA cohort, no CBC in these files and no
# repeat measures). Plausible values from the clinical literature; change them here, with a reason.
# --------------------------------------------------------------------------------------------------------------
SHARE_PA = 0.03                  # seed and brief: 2-4% of a tested population
SHARE_PA_DIAGNOSED_BEFORE = 0.45  # PA diagnosed and treated before the export window (prevalent cases)
SHARE_OTHER_DEFICIENCY = 0.02    # diet, metformin, malabsorption: deficient, not PA
SHARE_SUPPLEMENTED = 0.04        # on oral B12 without a deficiency episode in the window
SHARE_MACROCYTOSIS = 0.015       # MCV > 100 from other causes (alcohol, liver, drugs), never tested for B12
SHARE_DIED = 0.03                # registry patients who died during the window, after their last record
DEATH_STREAM = 1                 # deaths draw from their own stream: every other file stays as the seed made it
PA_UNTREATED_B12_PMOL_L = (110.0, 0.35)        # geometric mean and sd(log) of untreated PA
OTHER_DEFICIENCY_B12_PMOL_L = (140.0, 0.22)    # straddles the 150 cut-off, so many land in the borderline band
IM_TREATED_B12_PMOL_L = (620.0, 0.45)          # on hydroxocobalamin 1 mg IM; ~9% stay below the 300 target
ORAL_TREATED_B12_PMOL_L = (360.0, 0.35)        # deficient patient on oral cyanocobalamin
SUPPLEMENT_LOG_SHIFT = (0.55, 0.25)            # oral B12 raises serum B12 by ~1.7x in replete people
WITHIN_PERSON_SD_LOG = {"b12": 0.10, "b12_treated": 0.18, "mma": 0.12, "hcy": 0.08, "folate": 0.20, "holotc": 0.20}
HOLOTC_FRACTION_OF_B12 = 0.21    # holoTC is ~20% of total B12; median holoTC ~80 pmol/L at B12 390
# NHANES low-B12 people are mostly subclinical; clinical PA has markedly raised MMA and homocysteine.
UNTREATED_MMA_LOG_SHIFT = {"pa": 0.9, "other": 0.5}
UNTREATED_HCY_LOG_SHIFT = {"pa": 0.35, "other": 0.2}
SUPPLEMENT_POOR_RESPONDER = (0.10, 0.8)        # share of supplemented with raised MMA anyway, and its log shift
ON_FOLIC_ACID_FOLATE_LOG_SHIFT = 0.8
IF_ANTIBODY_PA = (0.32, 0.60, 0.08)            # negative, positive, equivocal: IF Ab sensitivity ~50-70%
IF_ANTIBODY_OTHER = (0.94, 0.02, 0.04)
ROUTINE_VISITS_PER_YEAR = 0.7
DEFICIENCY_ONSET_DAYS = 540      # MCV rises and Hb falls over ~18 months before the diagnosis
RECOVERY_DAYS = 90               # and recover within ~3 months of treatment
# The rest of the pathway and its gaps (rules release 2).
EGFR_AT_AGE = (105.0, 0.9, 30.0)  # median eGFR 105 mL/min/1.73m2 up to age 30, then 0.9 lower a year (CKD-EPI)
EGFR_SD_LOG = (0.20, 0.07)       # between people, and visit to visit
EGFR_ORDERED = (0.25, 0.60)      # share of blood draws with a renal panel: under 60, 60 and over
EGFR_WITH_MMA = 0.6              # and of MMA requests, since MMA is read against renal function
# MMA and homocysteine rise as the kidneys fail: log value + k * ln(60 / eGFR) below 60 (MMA about triples and
# homocysteine about doubles at eGFR 30, as in CKD cohorts).
RENAL_LOG_SHIFT_PER_LOG_EGFR_DEFICIT = {"mma": 1.5, "hcy": 1.0}
SHARE_IM_WITHOUT_INDICATION = 0.012  # injections started without a documented deficiency, never reviewed
SHARE_WORK_UP_WITHOUT_CBC = 0.20 # a deficient result whose work-up missed the blood count
SHARE_NEURO_FEATURES = {"deficient": 0.25, "general": 0.02}  # paraesthesia, neuropathy, gait, memory
HCY_ON_FOLLOW_UP = 0.30          # homocysteine at a recheck after treatment (the seed sets a target for it)

# Report artefacts, as shares of result rows.
SHARE_CANCELLED = 0.010
SHARE_PRELIMINARY = 0.015
SHARE_CORRECTED = 0.010
SHARE_DUPLICATED = 0.005
SHARE_DAMAGED = 0.007            # spread evenly over the kinds below
SHARE_NOT_IN_REGISTRY = 0.002    # patients with results but no patients.csv row

# --------------------------------------------------------------------------------------------------------------
# Codes
# --------------------------------------------------------------------------------------------------------------
B12, HOLOTC, MMA, HCY, FOLATE, HGB, MCV, IFAB, EGFR = range(9)
ANALYTE_COUNT = 9
TUBE_OF_ANALYTE = np.array([1, 1, 2, 2, 1, 0, 0, 1, 1])  # 0 EDTA (CBC), 1 serum, 2 send-out: one accession each
TURNAROUND_HOURS = np.array([(4, 72), (4, 72), (72, 336), (72, 336), (4, 72), (1, 8), (1, 8), (48, 240), (2, 24)],
                            float)

GENERAL, PA, OTHER_DEFICIENCY, SUPPLEMENTED, MACROCYTOSIS = range(5)
NEGATIVE, POSITIVE, EQUIVOCAL = range(3)
FOLLOW_NEVER, FOLLOW_ON_TIME, FOLLOW_LATE = range(3)
NO_B12, B12_IM, B12_ORAL, B12_METHYL_ORAL = range(4)
STATUS_TEXT = ("F", "C", "P", "X")
FINAL, CORRECTED, PRELIMINARY, CANCELLED = range(4)

DAMAGE_KINDS = ("empty_patient_id", "unknown_unit", "unknown_test_code", "unparseable_value",
                "future_collection_date", "negative_value", "missing_column")
(NOT_DAMAGED, EMPTY_PATIENT_ID, UNKNOWN_UNIT, UNKNOWN_TEST_CODE, UNPARSEABLE_VALUE, FUTURE_COLLECTION,
 NEGATIVE_VALUE, MISSING_COLUMN) = range(8)
UNPARSEABLE_TEXTS = ("hemolyzed", "see comment")
UNKNOWN_LOINC = "99999-9"
UNKNOWN_TEST_NAME = "MISC REFERRAL TEST"
UNKNOWN_UNIT_TEXT = "mg/dL"
FUTURE_YEAR = 2099

NEVER = 10**7  # a day number far beyond any date used: "no such event" / "still active"
SECONDS_PER_DAY = 86_400
CHUNK_ROWS = 500_000

PRACTICES = ("Abbey Road Surgery", "Brook Lane Medical Centre", "Castle Street Practice",
             "Daisy Hill Health Centre", "Elm Grove Surgery", "Fairfield Family Practice", "Greenway Medical Group")
PRACTICE_WEIGHTS = np.array([0.18, 0.16, 0.14, 0.15, 0.13, 0.12, 0.12])
HOME_SITE_OF_PRACTICE = np.array([0, 0, 0, 1, 1, 2, 2])
SHARE_TESTED_AWAY_FROM_HOME = 0.15
# The share of routine B12 tests a practice really adds to the bloods of patients with no known B12 problem:
# Abbey Road Surgery seldom does, so its testing coverage is low for its size, the kind of outlier the report's
# funnel plot is there to show. Patients with a deficiency, PA or supplements are tested as anywhere. Applied
# after every other draw (routine_b12_not_added), so the rest of the population is the same with or without it.
PRACTICE_ROUTINE_B12_TESTING = np.array([0.05, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])

# (code_system, code, weight)
PA_DIAGNOSIS_CODES = (("ICD-10", "D51.0", 0.35), ("ICD10", "D51.0", 0.10), ("ICD-10", "D510", 0.10),
                      ("ICD-10-CM", "D51.0", 0.10), ("ICD-9", "281.0", 0.10), ("SNOMED", "84027009", 0.15),
                      ("http://snomed.info/sct", "84027009", 0.10))
OTHER_B12_DIAGNOSIS_CODES = (("ICD-10", "D51.9", 0.4), ("ICD-10", "D51.1", 0.2), ("ICD-10", "D51.8", 0.1),
                             ("ICD-10", "E53.8", 0.3))
# Neurological features a GP codes (with and without the dot, and subcodes of the listed codes).
NEURO_DIAGNOSIS_CODES = (("ICD-10", "R20.2", 0.30), ("ICD-10", "G62.9", 0.20), ("ICD-10", "R26.8", 0.15),
                         ("ICD-10", "R202", 0.05), ("ICD-10", "G63.2", 0.05), ("ICD-10", "R27.0", 0.05),
                         ("ICD-10", "R41.3", 0.10), ("ICD-10", "F06.7", 0.07), ("ICD-10", "G32.0", 0.03))
UNRELATED_DIAGNOSIS_CODES = (("ICD-10", "E11.9", 0.16), ("ICD-10", "I10", 0.18), ("ICD-10", "E03.9", 0.08),
                             ("ICD-10", "K21.9", 0.08), ("ICD-10", "F32.9", 0.08), ("ICD-10", "N18.3", 0.05),
                             ("ICD-10", "D50.9", 0.06), ("ICD-10", "E78.5", 0.10), ("ICD-9", "250.00", 0.04),
                             ("ICD-9", "401.9", 0.04), ("SNOMED-CT", "44054006", 0.05),
                             ("SNOMED-CT", "38341003", 0.04))

# (drug, atc_code, route, dose, weight): free text as GP systems export it; ATC often missing on free text.
HYDROXOCOBALAMIN_PRODUCTS = (("Hydroxocobalamin", "B03BA03", "IM", "1 mg", 0.55),
                             ("Hydroxocobalamin 1mg/1ml solution for injection ampoules", "B03BA03", "intramuscular",
                              "1 mg", 0.35),
                             ("HYDROXOCOBALAMIN", "", "IM", "1mg", 0.05),
                             ("Hydroxocobalamin 1mg/1ml injection", "B03BA03", "78421000", "1 mg", 0.05))
CYANOCOBALAMIN_PRODUCTS = (("Cyanocobalamin", "B03BA01", "oral", "1000 micrograms", 0.55),
                           ("Cyanocobalamin 1000mcg tablets", "", "oral", "1000 micrograms", 0.30),
                           ("Cyanocobalamin 1000mcg tablets", "", "PO", "1000 mcg", 0.15))
METHYLCOBALAMIN_PRODUCTS = (("Methylcobalamin 1000mcg tablets", "", "oral", "1000 micrograms", 1.0),)
FOLIC_ACID_PRODUCTS = (("Folic acid", "B03BB01", "oral", "5 mg", 0.5), ("Folic acid 5mg tablets", "", "oral",
                                                                         "5 mg", 0.35),
                       ("Folic acid 400microgram tablets", "", "oral", "400 micrograms", 0.15))
UNRELATED_PRODUCTS = (("Metformin 500mg tablets", "A10BA02", "oral", "500 mg", 0.14),
                      ("Amlodipine", "C08CA01", "oral", "5 mg", 0.14),
                      ("Atorvastatin 20mg tablets", "C10AA05", "oral", "20 mg", 0.16),
                      ("Omeprazole", "A02BC01", "oral", "20 mg", 0.14),
                      ("Levothyroxine", "H03AA01", "oral", "100 micrograms", 0.10),
                      ("Ramipril", "C09AA05", "oral", "5 mg", 0.12),
                      ("Sertraline", "N06AB06", "oral", "50 mg", 0.08),
                      # B03A iron and a B-vitamin mix without B12: near misses for a careless "B03B"/"vitamin B" match
                      ("Ferrous sulfate 200mg tablets", "B03AA07", "oral", "200 mg", 0.08),
                      ("Vitamin B compound strong tablets", "A11EA", "oral", "1 tablet", 0.04))


# --------------------------------------------------------------------------------------------------------------
# Laboratories: how each site reports each analyte
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnitVariant:
    unit: str
    per_si: float                      # reported value = canonical value * per_si
    decimals: int
    reference_range: str | tuple[str, str]  # one text, or (male, female) for haemoglobin
    censor_below: float | None = None  # the assay's measuring range: "<50", ">1476"
    censor_above: float | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class TestSpec:
    loinc: str
    local_code: str
    test_name: str
    variants: tuple[UnitVariant, ...]
    performing_lab: str | None = None  # None: the site itself
    variant_switch_on: date | None = None  # variants[0] before this date, variants[1] from it (LIS upgrade)


@dataclass(frozen=True)
class Site:
    name: str
    file_name: str
    gzip: bool
    bom: bool
    time_style: str                    # "offset": 2024-03-05T08:15:00+01:00, "space": 2024-03-05 08:15:00,
                                       # "date": collected as 2024-03-05 (resulted as 2024-03-05T08:15:00)
    accession_prefix: str
    share_loinc_missing: float         # rows with only the local code
    share_local_code_missing: float
    normal_flag: str
    qualitative_texts: tuple[str, str, str]  # negative, positive, equivocal
    tests: dict[int, TestSpec]

    @property
    def resulted_style(self) -> str:
        # The date-only site still stamps the release time of a result.
        return "T" if self.time_style == "date" else self.time_style


def _one(unit, per_si, decimals, reference_range, censor_below=None, censor_above=None, weight=1.0):
    return UnitVariant(unit, per_si, decimals, reference_range, censor_below, censor_above, weight)


PG_PER_PMOL = 1 / 0.7378   # docs/models.md, Analytes and units: 1 pg/mL = 0.7378 pmol/L
NG_ML_PER_NMOL = 1 / 2.266

SITES = (
    Site(name="Northgate Hospital Pathology", file_name="labs_northgate.csv", gzip=False, bom=True,
         time_style="offset", accession_prefix="NG", share_loinc_missing=0.0, share_local_code_missing=0.0,
         normal_flag="", qualitative_texts=("Negative", "Positive", "Equivocal"),
         tests={
             B12: TestSpec("14685-2", "B12", "Vitamin B12", (
                 _one("pmol/L", 1, 0, "145-569", 50, 1476, 0.7), _one("pmol/l", 1, 0, "145-569", 50, 1476, 0.3))),
             HOLOTC: TestSpec("72160-5", "HOLOTC", "Active B12 (holotranscobalamin)", (
                 _one("pmol/L", 1, 0, "25-165", 5),)),
             MMA: TestSpec("13964-2", "MMA", "Methylmalonic acid", (
                 _one("umol/L", 1, 2, "0.00-0.40", weight=0.6), _one("\u00b5mol/L", 1, 2, "0.00-0.40", weight=0.4))),
             HCY: TestSpec("13965-9", "HCY", "Homocysteine", (
                 _one("umol/L", 1, 1, "5.0-15.0", weight=0.6), _one("\u00b5mol/L", 1, 1, "5.0-15.0", weight=0.4))),
             FOLATE: TestSpec("2284-8", "FOL", "Serum folate", (_one("nmol/L", 1, 1, "10.4-42.4", 4.5, 45.4),)),
             HGB: TestSpec("718-7", "HB", "Haemoglobin", (_one("g/L", 1, 0, ("130-170", "120-150")),)),
             MCV: TestSpec("787-2", "MCV", "Mean cell volume", (_one("fL", 1, 1, "80.0-100.0"),)),
             IFAB: TestSpec("31444-3", "IFAB", "Intrinsic factor antibody", (_one("", 1, 0, "Negative"),)),
             EGFR: TestSpec("62238-1", "EGFR", "eGFR (CKD-EPI)", (_one("mL/min/1.73m2", 1, 0, "90-200",
                                                                       censor_above=90),)),
         }),
    Site(name="Riverside Clinical Laboratory", file_name="labs_riverside.csv.gz", gzip=True, bom=False,
         time_style="space", accession_prefix="R", share_loinc_missing=0.0, share_local_code_missing=0.3,
         normal_flag="N", qualitative_texts=("NEGATIVE", "POSITIVE", "EQUIVOCAL"),
         tests={
             # The LIS upgrade on 2024-01-01 renamed pg/mL to ng/L (same number).
             B12: TestSpec("2132-9", "VITB12", "VITAMIN B12", (
                 _one("pg/mL", PG_PER_PMOL, 0, "197-771", 150, 2000),
                 _one("ng/L", PG_PER_PMOL, 0, "197-771", 150, 2000)),
                 variant_switch_on=date(2024, 1, 1)),
             MMA: TestSpec("13964-2", "MMA", "METHYLMALONIC ACID", (_one("nmol/L", 1000, 0, "0-400"),)),
             HCY: TestSpec("13965-9", "HCY", "HOMOCYSTEINE", (_one("umol/L", 1, 1, "0.0-15.0"),)),
             FOLATE: TestSpec("2284-8", "FOLATE", "FOLATE, SERUM", (
                 _one("ng/mL", NG_ML_PER_NMOL, 1, "3.1-17.5", 1.0, 20.0),)),
             HGB: TestSpec("718-7", "HGB", "HEMOGLOBIN", (_one("g/dL", 0.1, 1, ("13.5-17.5", "12.0-15.5")),)),
             MCV: TestSpec("787-2", "MCV", "MCV", (_one("fL", 1, 0, "80-100"),)),
             IFAB: TestSpec("31444-3", "IFAB", "INTRINSIC FACTOR AB", (_one("", 1, 0, "NEGATIVE"),)),
             EGFR: TestSpec("33914-3", "GFR", "EGFR MDRD", (_one("mL/min/{1.73_m2}", 1, 0, "60-200",
                                                                 censor_above=60),)),
         }),
    Site(name="Valley Community Laboratory", file_name="labs_valley.csv", gzip=False, bom=False,
         time_style="date", accession_prefix="V", share_loinc_missing=0.4, share_local_code_missing=0.0,
         normal_flag="", qualitative_texts=("Negative", "Positive", "Equivocal"),
         tests={
             B12: TestSpec("14685-2", "B12", "Serum B12", (_one("pmol/l", 1, 1, "156-672", 111, 1476),)),
             HOLOTC: TestSpec("72160-5", "ACTB12", "Active B12", (_one("pmol/l", 1, 0, "25-165", 5),)),
             MMA: TestSpec("13964-2", "MMA", "Methylmalonic Acid", (
                 _one("umol/l", 1, 2, "0.00-0.37", weight=0.5), _one("\u00b5mol/L", 1, 2, "0.00-0.37", weight=0.5)),
                 performing_lab="Regional Reference Laboratory"),
             HCY: TestSpec("13965-9", "HCY", "Homocysteine", (_one("umol/l", 1, 1, "5.0-15.0"),),
                           performing_lab="Regional Reference Laboratory"),
             FOLATE: TestSpec("2284-8", "FOL", "Folate", (_one("nmol/l", 1, 1, "7.0-45.0"),)),
             HGB: TestSpec("718-7", "HB", "Haemoglobin", (_one("g/l", 1, 0, ("130-180", "115-165")),)),
             MCV: TestSpec("787-2", "MCV", "MCV", (_one("fL", 1, 1, "80.0-100.0"),)),
             IFAB: TestSpec("31443-5", "IFAB", "Intrinsic Factor Antibodies", (_one("", 1, 0, "Negative"),)),
             EGFR: TestSpec("98979-8", "EGFR", "eGFR", (_one("mL/min/1.73 m2", 1, 0, "90-200", weight=0.7),
                                                         _one("ml/min/1.73m\u00b2", 1, 0, "90-200", weight=0.3))),
         }),
)


@dataclass
class FormatTable:
    """One entry per (site, analyte, unit variant, sex): everything a result row needs to be reported.

    Rows carry an index into these arrays, so every string column becomes one vectorised `take`.
    """

    offset: np.ndarray          # [site, analyte] -> first entry, -1 when the site does not offer the test
    variant_count: np.ndarray   # [site, analyte]
    switch_day: np.ndarray      # [site, analyte] -> day number of the unit switch, NEVER when none
    variant_cumweights: list    # [site][analyte] -> cumulative weights of the variants
    loinc: list[str]
    local_code: list[str]
    test_name: list[str]
    unit: list[str]
    reference_range: list[str]
    performing_lab: list[str]
    per_si: np.ndarray
    decimals: np.ndarray
    ref_low: np.ndarray
    ref_high: np.ndarray
    censor_below: np.ndarray
    censor_above: np.ndarray
    censor_below_text: list[str]
    censor_above_text: list[str]


def parse_reference_range(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        return float(low), float(high)
    except ValueError:
        return np.nan, np.nan  # qualitative ("Negative")


def censor_text(comparator: str, bound: float | None, decimals: int) -> str:
    """'<50', '>1476', '<4.5': labs print the assay limit without trailing zeros."""
    if bound is None:
        return ""
    return comparator + (f"{bound:.0f}" if float(bound).is_integer() else f"{bound:.{decimals}f}")


def build_format_table() -> FormatTable:
    offset = np.full((len(SITES), ANALYTE_COUNT), -1, np.int32)
    variant_count = np.zeros((len(SITES), ANALYTE_COUNT), np.int32)
    switch_day = np.full((len(SITES), ANALYTE_COUNT), NEVER, np.int64)
    cumweights = [[None] * ANALYTE_COUNT for _ in SITES]
    entries = []
    for site_index, site in enumerate(SITES):
        for analyte, spec in site.tests.items():
            offset[site_index, analyte] = len(entries)
            variant_count[site_index, analyte] = len(spec.variants)
            if spec.variant_switch_on is not None:
                switch_day[site_index, analyte] = day_number(spec.variant_switch_on)
            weights = np.array([v.weight for v in spec.variants])
            cumweights[site_index][analyte] = np.cumsum(weights / weights.sum())
            for variant in spec.variants:
                for sex in (0, 1):
                    ranges = variant.reference_range
                    reference = ranges if isinstance(ranges, str) else ranges[sex]
                    entries.append((spec, variant, reference, spec.performing_lab or site.name))
    low_high = np.array([parse_reference_range(reference) for _, _, reference, _ in entries])
    return FormatTable(
        offset=offset, variant_count=variant_count, switch_day=switch_day, variant_cumweights=cumweights,
        loinc=[s.loinc for s, _, _, _ in entries], local_code=[s.local_code for s, _, _, _ in entries],
        test_name=[s.test_name for s, _, _, _ in entries], unit=[v.unit for _, v, _, _ in entries],
        reference_range=[r for _, _, r, _ in entries], performing_lab=[lab for _, _, _, lab in entries],
        per_si=np.array([v.per_si for _, v, _, _ in entries]),
        decimals=np.array([v.decimals for _, v, _, _ in entries]),
        ref_low=low_high[:, 0], ref_high=low_high[:, 1],
        censor_below=np.array([np.nan if v.censor_below is None else v.censor_below for _, v, _, _ in entries]),
        censor_above=np.array([np.nan if v.censor_above is None else v.censor_above for _, v, _, _ in entries]),
        censor_below_text=[censor_text("<", v.censor_below, v.decimals) for _, v, _, _ in entries],
        censor_above_text=[censor_text(">", v.censor_above, v.decimals) for _, v, _, _ in entries],
    )


# --------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------
EPOCH = date(1970, 1, 1)


def day_number(day: date) -> int:
    return (day - EPOCH).days


def uniform_int(rng: np.random.Generator, low, high, size=None) -> np.ndarray:
    """Integers in [low, high] inclusive; low/high may be arrays."""
    low = np.asarray(low, np.int64)
    high = np.asarray(high, np.int64)
    return low + np.floor(rng.random(size if size is not None else np.broadcast(low, high).shape)
                          * (high - low + 1)).astype(np.int64)


def weighted_choice(rng: np.random.Generator, weights, size: int) -> np.ndarray:
    cumulative = np.cumsum(np.asarray(weights, float))
    return np.searchsorted(cumulative / cumulative[-1], rng.random(size), side="right").astype(np.int32)


def sample_log_quantiles(u: np.ndarray, log_quantiles: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling from a calibrated quantile table: returns log values."""
    return np.interp(u, QUANTILE_PROBS, log_quantiles)


def log_normal_logs(rng: np.random.Generator, geometric_mean_and_sd: tuple[float, float], n: int) -> np.ndarray:
    geometric_mean, sd_log = geometric_mean_and_sd
    return rng.normal(np.log(geometric_mean), sd_log, n)


def hinge_prediction(coefficients: tuple[float, float, float], log_b12: np.ndarray) -> np.ndarray:
    intercept, slope, below_hinge_slope = coefficients
    return intercept + slope * log_b12 + below_hinge_slope * np.maximum(0.0, np.log(HINGE_B12_PMOL_L) - log_b12)


def concat_columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def take_columns(columns: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {key: values[index] for key, values in columns.items()}


def row_count(columns: dict[str, np.ndarray]) -> int:
    return len(next(iter(columns.values())))


def ranges_to_index(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For per-owner counts, the owner of every generated item and its position 0..count-1 within the owner."""
    owner = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    position = np.arange(len(owner)) - np.repeat(first, counts)
    return owner, position


# --------------------------------------------------------------------------------------------------------------
# Patients and their hidden clinical state
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Window:
    start: int   # day numbers, inclusive
    end: int

    @property
    def years(self) -> float:
        return (self.end - self.start + 1) / 365.25


def make_cohort(rng: np.random.Generator, n: int, window: Window) -> dict[str, np.ndarray]:
    group = assign_groups(rng, n)
    sex = (rng.random(n) < 0.55).astype(np.int8)  # 1 = female; women are tested more often
    age_at_end = np.where(group == PA, np.clip(rng.normal(70, 11, n), 30, 98), np.clip(rng.normal(55, 19, n), 18, 98))
    birth = window.end - np.floor(age_at_end * 365.25).astype(np.int64) - uniform_int(rng, 0, 364, n)
    practice = weighted_choice(rng, PRACTICE_WEIGHTS, n)
    cohort = {"group": group, "sex": sex, "birth": birth, "practice": practice,
              "home_site": HOME_SITE_OF_PRACTICE[practice],
              "in_registry": rng.random(n) >= SHARE_NOT_IN_REGISTRY}
    cohort.update(hidden_levels(rng, group))
    cohort.update(deficiency_histories(rng, group, birth, window))
    cohort.update(supplement_histories(rng, group, cohort, window))
    cohort.update(folic_acid_histories(rng, group, cohort, window))
    cohort.update(injections_without_indication(rng, group, cohort, window))
    cohort["egfr_log_at_30"] = rng.normal(np.log(EGFR_AT_AGE[0]), EGFR_SD_LOG[0], n)
    return cohort


def injections_without_indication(rng: np.random.Generator, group: np.ndarray, cohort: dict,
                                  window: Window) -> dict:
    """People with no deficiency put on hydroxocobalamin injections (tiredness, "low normal" B12) and kept on
    them: the review candidates audits of general practice keep finding."""
    n = len(group)
    chosen = (group == GENERAL) & (rng.random(n) < SHARE_IM_WITHOUT_INDICATION)
    start = window.start - uniform_int(rng, -365, 2500, n)
    treated_log = log_normal_logs(rng, IM_TREATED_B12_PMOL_L, n)
    return {
        "b12_start": np.where(chosen, start, cohort["b12_start"]),
        "b12_end": np.where(chosen, NEVER, cohort["b12_end"]),
        "b12_route": np.where(chosen, B12_IM, cohort["b12_route"]).astype(np.int8),
        "b12_treated_log": np.where(chosen, treated_log, cohort["b12_treated_log"]),
    }


def assign_groups(rng: np.random.Generator, n: int) -> np.ndarray:
    shares = [SHARE_PA, SHARE_OTHER_DEFICIENCY, SHARE_SUPPLEMENTED, SHARE_MACROCYTOSIS]
    weights = [1 - sum(shares)] + shares   # order matches GENERAL, PA, OTHER_DEFICIENCY, ...
    return weighted_choice(rng, weights, n).astype(np.int8)


def hidden_levels(rng: np.random.Generator, group: np.ndarray) -> dict[str, np.ndarray]:
    """Each patient's own set points: untreated B12, residual MMA/homocysteine, folate, CBC."""
    n = len(group)
    is_pa, is_other = group == PA, group == OTHER_DEFICIENCY
    b12_untreated = sample_log_quantiles(rng.random(n), B12_LOG_QUANTILES + B12_TESTED_POPULATION_LOG_SHIFT)
    b12_untreated = np.where(is_pa, log_normal_logs(rng, PA_UNTREATED_B12_PMOL_L, n), b12_untreated)
    b12_untreated = np.where(is_other, log_normal_logs(rng, OTHER_DEFICIENCY_B12_PMOL_L, n), b12_untreated)
    macrocytic = group == MACROCYTOSIS
    return {
        "b12_untreated_log": b12_untreated,
        "mma_residual": sample_log_quantiles(rng.random(n), MMA_RESIDUAL_QUANTILES),
        "hcy_residual": sample_log_quantiles(rng.random(n), HCY_RESIDUAL_QUANTILES),
        "folate_log": sample_log_quantiles(rng.random(n), FOLATE_LOG_QUANTILES),
        "holotc_log_fraction": rng.normal(np.log(HOLOTC_FRACTION_OF_B12), 0.2, n),
        "poor_responder": rng.random(n) < SUPPLEMENT_POOR_RESPONDER[0],
        "hgb_base": rng.normal(146, 9, n) - np.where(macrocytic, rng.uniform(0, 10, n), 0),  # male g/L
        "mcv_base": rng.normal(90, 3.5, n) + np.where(macrocytic, rng.uniform(12, 22, n), 0),
        "hgb_drop": np.where(is_pa, rng.uniform(15, 45, n), rng.uniform(5, 25, n)),
        "mcv_rise": np.where(is_pa, rng.uniform(8, 22, n), rng.uniform(3, 12, n)),
        "if_antibody": np.where(is_pa, weighted_choice(rng, IF_ANTIBODY_PA, n),
                                weighted_choice(rng, IF_ANTIBODY_OTHER, n)).astype(np.int8),
    }


def deficiency_histories(rng: np.random.Generator, group: np.ndarray, birth: np.ndarray,
                         window: Window) -> dict[str, np.ndarray]:
    """When deficient patients were found, treated (or not), and how well they are followed up."""
    n = len(group)
    is_pa, is_other = group == PA, group == OTHER_DEFICIENCY
    deficient = is_pa | is_other
    prevalent = is_pa & (rng.random(n) < SHARE_PA_DIAGNOSED_BEFORE)
    incident = deficient & ~prevalent
    # Index day: the first B12 result that showed the deficiency (inside the window for incident cases).
    index_day = np.full(n, NEVER, np.int64)
    index_day[incident] = uniform_int(rng, window.start, max(window.start, window.end - 30), incident.sum())
    earliest_diagnosis = np.maximum(birth + 25 * 365, window.start - 12 * 365)
    prevalent_day = uniform_int(rng, np.minimum(earliest_diagnosis, window.start - 90), window.start - 60)
    index_day = np.where(prevalent, prevalent_day, index_day)

    treated = np.where(is_pa, prevalent | (rng.random(n) < 0.92), is_other & (rng.random(n) < 0.75))
    folic_first = incident & (rng.random(n) < 0.15)  # the seed's pitfall: folic acid before B12
    delay = np.where(folic_first, uniform_int(rng, 14, 75, n), uniform_int(rng, 2, 30, n))
    b12_start = np.where(treated, index_day + delay, NEVER)
    route = np.where(treated, np.where(is_pa | (rng.random(n) < 0.4), B12_IM, B12_ORAL), NO_B12).astype(np.int8)
    course_ends = np.where(is_pa, rng.random(n) < 0.10, rng.random(n) < 0.6)
    b12_end = np.where(treated & course_ends, b12_start + np.where(is_pa, uniform_int(rng, 365, 1100, n),
                                                                   uniform_int(rng, 90, 365, n)), NEVER)
    b12_treated_log = np.where(route == B12_IM, log_normal_logs(rng, IM_TREATED_B12_PMOL_L, n),
                               log_normal_logs(rng, ORAL_TREATED_B12_PMOL_L, n))
    follow = np.where(is_pa, weighted_choice(rng, (0.25, 0.45, 0.30), n),
                      weighted_choice(rng, (0.40, 0.35, 0.25), n)).astype(np.int8)
    return {
        "prevalent_pa": prevalent, "incident": incident, "index_day": index_day, "treated": treated,
        "folic_first": folic_first, "b12_start": b12_start, "b12_end": b12_end, "b12_route": route,
        "b12_treated_log": b12_treated_log, "follow_up": np.where(treated, follow, FOLLOW_NEVER).astype(np.int8),
        "onset_day": np.where(deficient, index_day - DEFICIENCY_ONSET_DAYS, NEVER),
        "pa_diagnosis_coded": is_pa & (rng.random(n) < 0.88),
    }


def supplement_histories(rng: np.random.Generator, group: np.ndarray, cohort: dict, window: Window) -> dict:
    """People on oral B12 without a deficiency episode: started before or during the window."""
    n = len(group)
    supplemented = group == SUPPLEMENTED
    before = rng.random(n) < 0.6
    start = np.where(before, window.start - uniform_int(rng, 30, 2000, n),
                     uniform_int(rng, window.start, window.end, n))
    ends = rng.random(n) < 0.15
    end = np.where(ends, start + uniform_int(rng, 180, 900, n), NEVER)
    route = np.where(rng.random(n) < 0.9, B12_ORAL, B12_METHYL_ORAL)
    treated_log = cohort["b12_untreated_log"] + rng.normal(*SUPPLEMENT_LOG_SHIFT, n)
    return {
        "b12_start": np.where(supplemented, start, cohort["b12_start"]),
        "b12_end": np.where(supplemented, end, cohort["b12_end"]),
        "b12_route": np.where(supplemented, route, cohort["b12_route"]).astype(np.int8),
        "b12_treated_log": np.where(supplemented, treated_log, cohort["b12_treated_log"]),
    }


def folic_acid_histories(rng: np.random.Generator, group: np.ndarray, cohort: dict, window: Window) -> dict:
    n = len(group)
    folic_first = cohort["folic_first"]
    with_b12 = (group == PA) & cohort["treated"] & (rng.random(n) < 0.08)
    other = (group == GENERAL) & (rng.random(n) < 0.015)
    start = np.full(n, NEVER, np.int64)
    start = np.where(folic_first, cohort["index_day"] + uniform_int(rng, 0, 10, n), start)
    start = np.where(with_b12, cohort["b12_start"] + uniform_int(rng, 0, 90, n), start)
    start = np.where(other, uniform_int(rng, window.start - 730, window.end, n), start)
    ends = rng.random(n) < 0.5
    end = np.where((start < NEVER) & ends, start + uniform_int(rng, 60, 180, n), NEVER)
    return {"folic_start": start, "folic_end": end}


# --------------------------------------------------------------------------------------------------------------
# Encounters: one blood draw, with the tests ordered on it
# --------------------------------------------------------------------------------------------------------------
def empty_panels(size: int) -> np.ndarray:
    return np.zeros((size, ANALYTE_COUNT), bool)


def encounter_block(patient, day, site, panels) -> dict[str, np.ndarray]:
    return {"patient": np.asarray(patient, np.int64), "day": np.asarray(day, np.int64),
            "site": np.asarray(site, np.int8), "panels": panels}


def visit_site(rng: np.random.Generator, home_site: np.ndarray) -> np.ndarray:
    """Mostly the practice's lab; sometimes the patient is tested at one of the other two (hospital, A&E)."""
    away = rng.random(len(home_site)) < SHARE_TESTED_AWAY_FROM_HOME
    other = (home_site + uniform_int(rng, 1, len(SITES) - 1, len(home_site))) % len(SITES)
    return np.where(away, other, home_site).astype(np.int8)


def offers(site: np.ndarray, analyte: int) -> np.ndarray:
    return np.array([analyte in s.tests for s in SITES])[site]


def routine_encounters(rng: np.random.Generator, cohort: dict, window: Window) -> dict[str, np.ndarray]:
    n = len(cohort["group"])
    group = cohort["group"]
    age_factor = np.clip(1 + ((window.end - cohort["birth"]) / 365.25 - 50) / 60, 0.5, 1.8)
    group_factor = np.where((group == PA) | (group == OTHER_DEFICIENCY), 1.3, 1.0)
    frailty = rng.gamma(1.5, 1 / 1.5, n)  # some patients see the doctor far more often than others
    counts = rng.poisson(ROUTINE_VISITS_PER_YEAR * window.years * frailty * age_factor * group_factor)
    patient = np.repeat(np.arange(n), counts)
    m = len(patient)
    day = uniform_int(rng, window.start, window.end, m)
    site = visit_site(rng, cohort["home_site"][patient])
    g = group[patient]
    age = (day - cohort["birth"][patient]) / 365.25
    p_b12 = np.where(age >= 60, 0.38, 0.28)
    p_b12 = np.where(g == SUPPLEMENTED, 0.45, p_b12)
    p_b12 = np.where(g == MACROCYTOSIS, 0.0, p_b12)       # their macrocytosis is never followed up
    p_b12 = np.where(day < cohort["index_day"][patient], np.where(cohort["incident"][patient], 0.0, p_b12), p_b12)
    panels = empty_panels(m)
    panels[:, B12] = rng.random(m) < p_b12
    cbc = rng.random(m) < np.where(g == MACROCYTOSIS, 0.95, 0.85)
    panels[:, HGB] = cbc
    panels[:, MCV] = cbc
    panels[:, FOLATE] = rng.random(m) < np.where(panels[:, B12], 0.75, 0.03)
    panels[:, HCY] = rng.random(m) < np.where(panels[:, B12], 0.06, 0.004)
    panels[:, MMA] = rng.random(m) < np.where(g == SUPPLEMENTED, 0.35, np.where(panels[:, B12], 0.03, 0.005))
    panels[:, HOLOTC] = offers(site, HOLOTC) & (rng.random(m) < 0.03)
    panels[:, EGFR] = rng.random(m) < np.where(panels[:, MMA], EGFR_WITH_MMA,
                                               np.where(age >= 60, EGFR_ORDERED[1], EGFR_ORDERED[0]))
    return encounter_block(patient, day, site, panels)


def diagnostic_encounters(rng: np.random.Generator, cohort: dict, window: Window) -> list[dict[str, np.ndarray]]:
    """The work-up that found an incident deficiency, and the intrinsic factor antibody test after it."""
    patient = np.nonzero(cohort["incident"])[0]
    m = len(patient)
    day = cohort["index_day"][patient]
    site = cohort["home_site"][patient].astype(np.int8)
    is_pa = cohort["group"][patient] == PA
    panels = empty_panels(m)
    panels[:, B12] = True
    panels[:, HGB] = panels[:, MCV] = True
    panels[:, FOLATE] = rng.random(m) < 0.85
    panels[:, HCY] = rng.random(m) < 0.10
    panels[:, MMA] = rng.random(m) < np.where(is_pa, 0.15, 0.35)
    panels[:, HOLOTC] = offers(site, HOLOTC) & (rng.random(m) < 0.10)
    no_cbc = rng.random(m) < SHARE_WORK_UP_WITHOUT_CBC  # the work-up that forgot the blood count
    panels[:, HGB] = panels[:, MCV] = ~no_cbc
    panels[:, EGFR] = rng.random(m) < 0.5
    work_up = encounter_block(patient, day, site, panels)

    prevalent = np.nonzero(cohort["prevalent_pa"])[0]
    if_patient = np.concatenate([patient, prevalent])
    if_day = np.concatenate([day + uniform_int(rng, 0, 21, m),
                             uniform_int(rng, window.start, window.end, len(prevalent))])
    p_tested = np.concatenate([np.where(is_pa, 0.9, 0.4), np.full(len(prevalent), 0.1)])
    tested = rng.random(len(if_patient)) < p_tested
    if_panels = empty_panels(int(tested.sum()))
    if_panels[:, IFAB] = True
    antibody = encounter_block(if_patient[tested], if_day[tested], cohort["home_site"][if_patient[tested]], if_panels)
    return [work_up, antibody]


def follow_up_encounters(rng: np.random.Generator, cohort: dict, window: Window) -> dict[str, np.ndarray]:
    """Rechecks after treatment start S: first at S+90..183 days then yearly (on time), later and sparser (late),
    or none; some patients drop out after a few visits."""
    follow = cohort["follow_up"]
    patient = np.nonzero(follow != FOLLOW_NEVER)[0]
    on_time = follow[patient] == FOLLOW_ON_TIME
    k = len(patient)
    start = cohort["b12_start"][patient]
    first = start + np.where(on_time, uniform_int(rng, 90, 183, k), uniform_int(rng, 200, 450, k))
    interval = np.where(on_time, uniform_int(rng, 330, 400, k), uniform_int(rng, 420, 720, k))
    possible = np.where(first <= window.end, (window.end - first) // interval + 1, 0)
    dropout_after = rng.geometric(np.where(on_time, 0.12, 0.3), k)
    counts = np.minimum(possible, dropout_after)
    owner, position = ranges_to_index(counts)
    day = first[owner] + position * interval[owner] + uniform_int(rng, -20, 30, len(owner))
    keep = (day >= window.start) & (day <= window.end)
    owner, day = owner[keep], day[keep]
    visit_patient = patient[owner]
    m = len(visit_patient)
    panels = empty_panels(m)
    site = cohort["home_site"][visit_patient].astype(np.int8)
    panels[:, B12] = True
    cbc = rng.random(m) < 0.7
    panels[:, HGB] = panels[:, MCV] = cbc
    panels[:, FOLATE] = rng.random(m) < 0.35
    panels[:, MMA] = rng.random(m) < 0.15
    panels[:, HOLOTC] = offers(site, HOLOTC) & (rng.random(m) < 0.05)
    panels[:, HCY] = rng.random(m) < HCY_ON_FOLLOW_UP
    panels[:, EGFR] = rng.random(m) < EGFR_ORDERED[1]
    return encounter_block(visit_patient, day, site, panels)


def reflex_encounters(rng: np.random.Generator, cohort: dict, rows: dict[str, np.ndarray],
                      window: Window) -> dict[str, np.ndarray]:
    """What clinicians order after a B12 result: MMA/holoTC within weeks after a borderline one (not always),
    an intrinsic factor antibody after a low one in a patient not known to be deficient."""
    is_b12 = rows["analyte"] == B12
    value = rows["value_si"]
    borderline = is_b12 & (value >= 150) & (value <= 258) & (rng.random(len(value)) < 0.45)
    unexplained_low = (is_b12 & (value < 180) & (rng.random(len(value)) < 0.3)
                       & np.isin(cohort["group"][rows["patient"]], (GENERAL, SUPPLEMENTED, MACROCYTOSIS)))
    trigger = np.nonzero(borderline | unexplained_low)[0]
    day = rows["collected"][trigger] // SECONDS_PER_DAY + uniform_int(rng, 5, 42, len(trigger))
    trigger, day = trigger[day <= window.end], day[day <= window.end]
    m = len(trigger)
    site = rows["site"][trigger]
    is_borderline = borderline[trigger]
    panels = empty_panels(m)
    wants_holotc = offers(site, HOLOTC) & (rng.random(m) < 0.3)
    panels[:, HOLOTC] = is_borderline & wants_holotc
    panels[:, MMA] = is_borderline & (~wants_holotc | (rng.random(m) < 0.3))
    panels[:, B12] = is_borderline & (rng.random(m) < 0.25)
    panels[:, IFAB] = unexplained_low[trigger]
    panels[:, EGFR] = panels[:, MMA] & (rng.random(m) < EGFR_WITH_MMA)  # renal function to read the MMA by
    return encounter_block(rows["patient"][trigger], day, site, panels)


def expand_encounters(rng: np.random.Generator, encounters: dict[str, np.ndarray], first_id: int) -> dict:
    """One row per ordered test. Collection time is the encounter's (a weekday-ish working-hours draw)."""
    m = len(encounters["patient"])
    minute = uniform_int(rng, 7 * 60 + 30, 17 * 60, m)
    collected = encounters["day"] * SECONDS_PER_DAY + minute * 60
    encounter_id = first_id + np.arange(m, dtype=np.int64)
    enc_index, analyte = np.nonzero(encounters["panels"])  # row-major: one encounter's tests stay together
    return {
        "patient": encounters["patient"][enc_index].astype(np.int32),
        "site": encounters["site"][enc_index],
        "analyte": analyte.astype(np.int8),
        "encounter": encounter_id[enc_index],
        "collected": collected[enc_index],
    }


# --------------------------------------------------------------------------------------------------------------
# Measurement: the value of each test, from the patient's state on the day
# --------------------------------------------------------------------------------------------------------------
def measure(rng: np.random.Generator, cohort: dict, rows: dict[str, np.ndarray]) -> None:
    """Adds value_si (canonical unit) and qual (IF antibody) to rows, in place."""
    n = row_count(rows)
    value = np.full(n, np.nan)
    qual = np.full(n, -1, np.int8)
    for analyte in range(ANALYTE_COUNT):
        index = np.nonzero(rows["analyte"] == analyte)[0]
        if len(index) == 0:
            continue
        patient = rows["patient"][index]
        day = rows["collected"][index] // SECONDS_PER_DAY
        state = patient_state(cohort, patient, day)
        if analyte == IFAB:
            qual[index] = cohort["if_antibody"][patient]
        else:
            value[index] = MEASURES[analyte](rng, cohort, patient, day, state)
    rows["value_si"] = value
    rows["qual"] = qual


def patient_state(cohort: dict, patient: np.ndarray, day: np.ndarray) -> dict[str, np.ndarray]:
    on_b12 = (cohort["b12_start"][patient] <= day) & (day < cohort["b12_end"][patient])
    b12_log = np.where(on_b12, cohort["b12_treated_log"][patient], cohort["b12_untreated_log"][patient])
    group = cohort["group"][patient]
    untreated_pa = (group == PA) & ~on_b12
    untreated_other = (group == OTHER_DEFICIENCY) & ~on_b12
    on_folic = (cohort["folic_start"][patient] <= day) & (day < cohort["folic_end"][patient])
    return {"on_b12": on_b12, "b12_log": b12_log, "untreated_pa": untreated_pa, "untreated_other": untreated_other,
            "on_folic": on_folic, "severity": deficiency_severity(cohort, patient, day)}


def deficiency_severity(cohort: dict, patient: np.ndarray, day: np.ndarray) -> np.ndarray:
    """0..1: how far the anaemia/macrocytosis has developed; rises before diagnosis, recovers on treatment,
    rises again if treatment stops."""
    onset = cohort["onset_day"][patient].astype(float)
    start = cohort["b12_start"][patient].astype(float)
    end = cohort["b12_end"][patient].astype(float)
    day = day.astype(float)
    before = np.clip((day - onset) / DEFICIENCY_ONSET_DAYS, 0, 1)
    during = np.clip(1 - (day - start) / RECOVERY_DAYS, 0, 1)
    after = np.clip((day - end) / DEFICIENCY_ONSET_DAYS, 0, 1)
    severity = np.where(day < start, before, np.where(day < end, during, after))
    return np.where(onset >= NEVER, 0.0, severity)


def measure_b12(rng, cohort, patient, day, state):
    noise_sd = np.where(state["on_b12"], WITHIN_PERSON_SD_LOG["b12_treated"], WITHIN_PERSON_SD_LOG["b12"])
    return np.exp(state["b12_log"] + rng.normal(0, 1, len(patient)) * noise_sd)


def measure_holotc(rng, cohort, patient, day, state):
    # In untreated PA the share of B12 bound to transcobalamin falls first (holoTC is the early marker).
    fraction = cohort["holotc_log_fraction"][patient] + np.where(state["untreated_pa"], np.log(0.8), 0.0)
    noise = rng.normal(0, WITHIN_PERSON_SD_LOG["holotc"], len(patient))
    return np.exp(state["b12_log"] + fraction + noise)


def measure_mma(rng, cohort, patient, day, state):
    shift = (np.where(state["untreated_pa"], UNTREATED_MMA_LOG_SHIFT["pa"], 0.0)
             + np.where(state["untreated_other"], UNTREATED_MMA_LOG_SHIFT["other"], 0.0)
             + np.where(state["on_b12"] & cohort["poor_responder"][patient], SUPPLEMENT_POOR_RESPONDER[1], 0.0))
    renal = renal_log_shift(cohort, patient, day, "mma")
    noise = rng.normal(0, WITHIN_PERSON_SD_LOG["mma"], len(patient))
    return np.exp(hinge_prediction(MMA_ON_B12, state["b12_log"]) + cohort["mma_residual"][patient] + shift + renal
                  + noise)


def measure_homocysteine(rng, cohort, patient, day, state):
    shift = (np.where(state["untreated_pa"], UNTREATED_HCY_LOG_SHIFT["pa"], 0.0)
             + np.where(state["untreated_other"], UNTREATED_HCY_LOG_SHIFT["other"], 0.0))
    noise = rng.normal(0, WITHIN_PERSON_SD_LOG["hcy"], len(patient))
    return np.exp(hinge_prediction(HCY_ON_B12, state["b12_log"]) + cohort["hcy_residual"][patient] + shift
                  + renal_log_shift(cohort, patient, day, "hcy") + noise)


def measure_folate(rng, cohort, patient, day, state):
    noise = rng.normal(0, WITHIN_PERSON_SD_LOG["folate"], len(patient))
    return np.exp(cohort["folate_log"][patient] + noise
                  + np.where(state["on_folic"], ON_FOLIC_ACID_FOLATE_LOG_SHIFT, 0.0))


def measure_haemoglobin(rng, cohort, patient, day, state):
    female_offset = np.where(cohort["sex"][patient] == 1, -12.0, 0.0)
    base = cohort["hgb_base"][patient] + female_offset
    return np.maximum(40.0, base + rng.normal(0, 5, len(patient)) - state["severity"] * cohort["hgb_drop"][patient])


def measure_mcv(rng, cohort, patient, day, state):
    base = cohort["mcv_base"][patient] + rng.normal(0, 1.5, len(patient))
    return base + state["severity"] * cohort["mcv_rise"][patient]


def egfr_log(cohort, patient, day):
    """The patient's own eGFR on the day (log): the set point at 30, falling with age after it."""
    age = (day - cohort["birth"][patient]) / 365.25
    median_ratio = np.maximum(0.1, 1 - EGFR_AT_AGE[1] * np.maximum(age - EGFR_AT_AGE[2], 0) / EGFR_AT_AGE[0])
    return cohort["egfr_log_at_30"][patient] + np.log(median_ratio)


def renal_log_shift(cohort, patient, day, marker):
    deficit = np.maximum(0.0, np.log(60.0) - egfr_log(cohort, patient, day))
    return RENAL_LOG_SHIFT_PER_LOG_EGFR_DEFICIT[marker] * deficit


def measure_egfr(rng, cohort, patient, day, state):
    return np.maximum(3.0, np.exp(egfr_log(cohort, patient, day) + rng.normal(0, EGFR_SD_LOG[1], len(patient))))


MEASURES = {B12: measure_b12, HOLOTC: measure_holotc, MMA: measure_mma, HCY: measure_homocysteine,
            FOLATE: measure_folate, HGB: measure_haemoglobin, MCV: measure_mcv, EGFR: measure_egfr}


# --------------------------------------------------------------------------------------------------------------
# Reporting: times, accessions, unit variants, and the artefacts of real exports
# --------------------------------------------------------------------------------------------------------------
def add_result_times(rng: np.random.Generator, rows: dict[str, np.ndarray]) -> None:
    hours = TURNAROUND_HOURS[rows["analyte"]]
    turnaround = hours[:, 0] + rng.random(row_count(rows)) * (hours[:, 1] - hours[:, 0])
    rows["resulted"] = rows["collected"] + np.round(turnaround * 3600).astype(np.int64)


def choose_report_formats(rng: np.random.Generator, rows: dict[str, np.ndarray], cohort: dict,
                          formats: FormatTable) -> None:
    """Per row: which unit spelling the site used (random, or by date for a unit switch) and so which reference
    range; whether the loinc or local code was left empty."""
    n = row_count(rows)
    variant = np.zeros(n, np.int32)
    draw = rng.random(n)
    day = rows["collected"] // SECONDS_PER_DAY
    for site_index in range(len(SITES)):
        for analyte in range(ANALYTE_COUNT):
            count = formats.variant_count[site_index, analyte]
            if count <= 1:
                continue
            index = np.nonzero((rows["site"] == site_index) & (rows["analyte"] == analyte))[0]
            switch_day = formats.switch_day[site_index, analyte]
            if switch_day < NEVER:
                variant[index] = (day[index] >= switch_day).astype(np.int32)
            else:
                variant[index] = np.searchsorted(formats.variant_cumweights[site_index][analyte], draw[index],
                                                 side="right")
    offset = formats.offset[rows["site"], rows["analyte"]]
    rows["format"] = (offset + 2 * variant + cohort["sex"][rows["patient"]]).astype(np.int32)
    loinc_missing_share = np.array([s.share_loinc_missing for s in SITES])[rows["site"]]
    local_missing_share = np.array([s.share_local_code_missing for s in SITES])[rows["site"]]
    code_draw = rng.random(n)
    rows["loinc_missing"] = code_draw < loinc_missing_share
    # Never both: a row with neither code is a damaged row, made on purpose below.
    rows["local_missing"] = ~rows["loinc_missing"] & (code_draw > 1 - local_missing_share)


def assign_accessions(rows: dict[str, np.ndarray]) -> None:
    """One accession per encounter and tube, numbered per site in collection order."""
    key = rows["encounter"] * 3 + TUBE_OF_ANALYTE[rows["analyte"]]
    serial = np.zeros(row_count(rows), np.int64)
    for site_index in range(len(SITES)):
        index = np.nonzero(rows["site"] == site_index)[0]
        order = index[np.lexsort((key[index], rows["collected"][index]))]
        ordered_key = key[order]
        new_accession = np.ones(len(order), bool)
        new_accession[1:] = ordered_key[1:] != ordered_key[:-1]
        serial[order] = np.cumsum(new_accession) + 1000
    rows["accession_serial"] = serial
    rows["accession_day"] = rows["collected"] // SECONDS_PER_DAY


def take_disjoint(pool: np.ndarray, used: np.ndarray, eligible: np.ndarray, count: int) -> np.ndarray:
    """The first `count` rows of a shuffled pool that are eligible and not used yet; marks them used."""
    candidates = pool[eligible[pool] & ~used[pool]][:count]
    used[candidates] = True
    return candidates


def share_count(share: float, n: int, at_least: int = 1) -> int:
    return max(at_least if n >= 50 else 0, int(round(share * n)))


def add_report_artefacts(rng: np.random.Generator, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cancelled results, preliminary and corrected re-issues, damaged rows and exact duplicates."""
    n = row_count(rows)
    rows["status"] = np.zeros(n, np.int8)
    rows["blank_value"] = np.zeros(n, bool)
    rows["damage"] = np.zeros(n, np.int8)
    rows["damage_text"] = np.zeros(n, np.int8)
    numeric = rows["analyte"] != IFAB
    chemistry = np.isin(rows["analyte"], (B12, HOLOTC, MMA, HCY, FOLATE))  # CBCs are rarely re-issued
    anything = np.ones(n, bool)
    pool = rng.permutation(n)
    used = np.zeros(n, bool)

    preliminary = take_disjoint(pool, used, chemistry, share_count(SHARE_PRELIMINARY, n))
    corrected = take_disjoint(pool, used, chemistry, share_count(SHARE_CORRECTED, n))
    damage_per_kind = share_count(SHARE_DAMAGED / len(DAMAGE_KINDS), n)
    damage_eligible = {UNKNOWN_UNIT: rows["analyte"] == B12}
    for kind in range(1, len(DAMAGE_KINDS) + 1):
        chosen = take_disjoint(pool, used, damage_eligible.get(kind, numeric), damage_per_kind)
        rows["damage"][chosen] = kind
    cancelled = take_disjoint(pool, used, anything, share_count(SHARE_CANCELLED, n))
    duplicated = take_disjoint(pool, used, anything, share_count(SHARE_DUPLICATED, n))

    rows["status"][cancelled] = CANCELLED
    rows["blank_value"][cancelled] = rng.random(len(cancelled)) < 0.85
    damage_rows(rng, rows)
    reissues = [preliminary_reports(rng, take_columns(rows, preliminary)),
                corrected_reports(rng, take_columns(rows, corrected))]
    return concat_columns([rows, *reissues, take_columns(rows, duplicated)])


def damage_rows(rng: np.random.Generator, rows: dict[str, np.ndarray]) -> None:
    damage = rows["damage"]
    unparseable = damage == UNPARSEABLE_VALUE
    rows["damage_text"][unparseable] = rng.integers(0, len(UNPARSEABLE_TEXTS), unparseable.sum())
    negative = damage == NEGATIVE_VALUE
    rows["value_si"][negative] = -rows["value_si"][negative]
    future = np.nonzero(damage == FUTURE_COLLECTION)[0]
    turnaround = rows["resulted"][future] - rows["collected"][future]
    future_day = day_number(date(FUTURE_YEAR, 1, 1)) + uniform_int(rng, 0, 364, len(future))
    rows["collected"][future] = future_day * SECONDS_PER_DAY + rows["collected"][future] % SECONDS_PER_DAY
    rows["resulted"][future] = rows["collected"][future] + turnaround


def preliminary_reports(rng: np.random.Generator, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A P result sent before the final one (same accession), usually the same number."""
    n = row_count(rows)
    rows["status"][:] = PRELIMINARY
    turnaround = rows["resulted"] - rows["collected"]
    rows["resulted"] = rows["collected"] + (turnaround * rng.uniform(0.2, 0.6, n)).astype(np.int64)
    rows["value_si"] = rows["value_si"] * np.where(rng.random(n) < 0.7, 1.0, np.exp(rng.normal(0, 0.05, n)))
    return rows


def corrected_reports(rng: np.random.Generator, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A C re-issue (same accession and test), hours to days later, usually with a changed value (a
    dilution or transcription error found); the rest correct only a comment, so the number stays."""
    n = row_count(rows)
    rows["status"][:] = CORRECTED
    rows["resulted"] = rows["resulted"] + uniform_int(rng, 2 * 3600, 10 * SECONDS_PER_DAY, n)
    changed = rng.random(n) < 0.85
    rows["value_si"] = rows["value_si"] * np.where(changed, np.exp(rng.normal(0, 0.25, n)), 1.0)
    return rows


# --------------------------------------------------------------------------------------------------------------
# Text: numbers, dates and CSV lines, all vectorised
# --------------------------------------------------------------------------------------------------------------
def csv_field(text: str) -> str:
    """Quote a dictionary value only when CSV needs it (comma, quote, line break)."""
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def lookup(dictionary: list[str] | tuple[str, ...], index: np.ndarray) -> pa.Array:
    """Each row's text from a small dictionary: the vectorised way to build a string column."""
    table = pa.array([csv_field(text) for text in dictionary], pa.string())
    return table.take(pa.array(np.asarray(index, np.int32)))


def fixed_decimals(values: np.ndarray, decimals: np.ndarray) -> pa.Array:
    """Numbers as text with a per-row number of decimals ('245', '0.23', '13.5', '-245'), exact and fast."""
    scale = 10 ** decimals.astype(np.int64)
    scaled = np.rint(np.abs(np.nan_to_num(values)) * scale).astype(np.int64)
    integer = pa.array(scaled // scale).cast(pa.string())
    fraction = scaled % scale
    text = integer
    for places in np.unique(decimals[decimals > 0]):
        padded = pc.utf8_lpad(pa.array(fraction).cast(pa.string()), width=int(places), padding="0")
        with_fraction = pc.binary_join_element_wise(integer, padded, ".")
        text = pc.if_else(pa.array(decimals == places), with_fraction, text)
    sign = pa.array(np.where(values < 0, "-", ""))
    return pc.binary_join_element_wise(sign, text, "")


def zero_padded(numbers: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pa.array(np.asarray(numbers, np.int64)).cast(pa.string()), width=width, padding="0")


def day_texts(days: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """ISO dates for the distinct days (few), and each row's index into them."""
    distinct, inverse = np.unique(days, return_inverse=True)
    return pa.array(np.datetime_as_string(distinct.astype("datetime64[D]"), unit="D")), inverse


def iso_dates(days: np.ndarray) -> pa.Array:
    texts, inverse = day_texts(days)
    return texts.take(pa.array(inverse.astype(np.int32)))


@functools.cache
def time_of_day_texts() -> pa.Array:
    """'HH:MM:SS' for every second of the day, built once: timestamps become two lookups and a join, which is
    ~20x faster than strftime on millions of rows."""
    seconds = np.arange(SECONDS_PER_DAY)
    hh, mm, ss = (zero_padded(part, 2) for part in (seconds // 3600, seconds // 60 % 60, seconds % 60))
    return pc.binary_join_element_wise(hh, mm, ss, ":")


def central_european_summer_time(seconds: np.ndarray) -> np.ndarray:
    """EU rule: daylight saving from the last Sunday of March to the last Sunday of October (wall clock)."""
    if len(seconds) == 0:
        return np.zeros(0, bool)
    day = seconds // SECONDS_PER_DAY
    year = day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64)  # years since 1970
    years = np.arange(year.min(), year.max() + 1)

    def last_sunday(month_after: int) -> np.ndarray:
        first_of_next = (years.astype("datetime64[Y]") + np.timedelta64(month_after, "M")).astype("datetime64[D]")
        last_day = first_of_next.astype(np.int64) - 1
        weekday = (last_day + 3) % 7  # Monday = 0; 1970-01-01 was a Thursday
        return last_day - (weekday - 6) % 7

    begins, ends = last_sunday(3)[year - years[0]], last_sunday(10)[year - years[0]]
    second_of_day = seconds % SECONDS_PER_DAY
    after_begin = (day > begins) | ((day == begins) & (second_of_day >= 2 * 3600))
    before_end = (day < ends) | ((day == ends) & (second_of_day < 3 * 3600))
    return after_begin & before_end


def timestamps(seconds: np.ndarray, style: str) -> pa.Array:
    """ISO 8601 text in a site's style: "offset", "space", "T" (no offset) or "date" (no time)."""
    dates = iso_dates(seconds // SECONDS_PER_DAY)
    if style == "date":
        return dates
    times = time_of_day_texts().take(pa.array((seconds % SECONDS_PER_DAY).astype(np.int32)))
    if style == "space":
        return pc.binary_join_element_wise(dates, times, " ")
    text = pc.binary_join_element_wise(dates, times, "T")
    if style == "offset":
        offsets = lookup(("+01:00", "+02:00"), central_european_summer_time(seconds).astype(np.int32))
        text = pc.binary_join_element_wise(text, offsets, "")
    return text


def write_lines(sink: BinaryIO, columns: list[pa.Array], short_rows: np.ndarray | None = None) -> None:
    """Write CSV lines: fields joined by commas, rows ended by a newline; `short_rows` lose their last field.

    Every row becomes one string, so the array's data buffer is the exact bytes of the lines, written in one
    call. Fields must already be CSV-safe (see `csv_field`).
    """
    last_with_newline = pc.binary_join_element_wise(columns[-1], "\n", "")
    lines = pc.binary_join_element_wise(*columns[:-1], last_with_newline, ",")
    if short_rows is not None and short_rows.any():
        # The few damaged rows: rebuild just them without the last field, and put them in place.
        mask = pa.array(short_rows)
        shortened = pc.binary_join_element_wise(
            *(pc.filter(column, mask) for column in columns[:-1]), ",")
        lines = pc.replace_with_mask(lines, mask, pc.binary_join_element_wise(shortened, "\n", ""))
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    begin, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    sink.write(memoryview(lines.buffers()[2])[begin:end])


class ExportFile:
    """A file as exporters write it: optionally with a UTF-8 BOM, optionally gzip (no time stamp or name in the
    header, so the bytes depend only on the content)."""

    def __init__(self, path: Path, compress: bool = False, bom: bool = False):
        self.path, self.compress, self.bom = path, compress, bom

    def __enter__(self) -> BinaryIO:
        self._raw = open(self.path, "wb")
        self._sink = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=6, mtime=0) \
            if self.compress else self._raw
        if self.bom:
            self._sink.write("\ufeff".encode("utf-8"))
        return self._sink

    def __exit__(self, *exc) -> None:
        if self.compress:
            self._sink.close()
        self._raw.close()


def header_line(columns: tuple[str, ...]) -> bytes:
    return (",".join(columns) + "\n").encode("utf-8")


def patient_ids(patient: np.ndarray) -> pa.Array:
    """P0000123: the export keeps the zero padding, so ids must stay text."""
    return pc.binary_join_element_wise("P", zero_padded(patient + 1, 7), "")


# --------------------------------------------------------------------------------------------------------------
# Lab files
# --------------------------------------------------------------------------------------------------------------
def lab_columns(rows: dict[str, np.ndarray], site_index: int,
                formats: FormatTable) -> tuple[list[pa.Array], np.ndarray]:
    """The 13 contract columns as text for a chunk of one site's rows, and which rows lose their last field."""
    site = SITES[site_index]
    fmt = rows["format"]
    damage = rows["damage"]
    patient = patient_ids(rows["patient"])
    patient = pc.if_else(pa.array(damage == EMPTY_PATIENT_ID), pa.scalar(""), patient)
    accession = pc.binary_join_element_wise(
        site.accession_prefix, lookup(tuple(f"{y % 100:02d}" for y in range(1970, 2200)),
                                      rows["accession_day"].astype("datetime64[D]").astype("datetime64[Y]")
                                      .astype(np.int64)), zero_padded(rows["accession_serial"], 7), "")

    unknown_code = damage == UNKNOWN_TEST_CODE
    n_formats = len(formats.loinc)
    loinc = lookup(formats.loinc + ["", UNKNOWN_LOINC], np.where(unknown_code, n_formats + 1,
                                                                np.where(rows["loinc_missing"], n_formats, fmt)))
    local_code = lookup(formats.local_code + [""], np.where(unknown_code | rows["local_missing"], n_formats, fmt))
    test_name = lookup(formats.test_name + [UNKNOWN_TEST_NAME], np.where(unknown_code, n_formats, fmt))
    unit = lookup(formats.unit + [UNKNOWN_UNIT_TEXT], np.where(damage == UNKNOWN_UNIT, n_formats, fmt))
    value, flag = result_texts(rows, site, formats)
    columns = [patient, accession, loinc, local_code, test_name, value, unit,
               lookup(formats.reference_range, fmt), flag, lookup(STATUS_TEXT, rows["status"]),
               timestamps(rows["collected"], site.time_style), timestamps(rows["resulted"], site.resulted_style),
               lookup(formats.performing_lab, fmt)]
    return columns, damage == MISSING_COLUMN


class ResultTexts:
    """The texts a site prints instead of a number, in one lookup table, with where each kind begins."""

    def __init__(self, site: Site, formats: FormatTable):
        self.blank = 0
        self.unparseable = 1
        self.qualitative = self.unparseable + len(UNPARSEABLE_TEXTS)
        self.censored_below = self.qualitative + len(site.qualitative_texts)
        self.censored_above = self.censored_below + len(formats.censor_below_text)
        self.table = (["", *UNPARSEABLE_TEXTS, *site.qualitative_texts]
                      + formats.censor_below_text + formats.censor_above_text)


def result_texts(rows: dict[str, np.ndarray], site: Site, formats: FormatTable) -> tuple[pa.Array, pa.Array]:
    """result_value and abnormal_flag: the number in the site's unit and decimals, or the assay's censoring
    bound, or the qualitative word, or the text of a damaged or cancelled row."""
    fmt = rows["format"]
    decimals = formats.decimals[fmt]
    reported = rows["value_si"] * formats.per_si[fmt]
    shown = np.rint(reported * 10.0 ** decimals) / 10.0 ** decimals
    qualitative = rows["qual"] >= 0
    not_negative = ~(reported < 0)
    below = not_negative & (shown < formats.censor_below[fmt])
    above = not_negative & (shown > formats.censor_above[fmt])
    shown = np.where(below, formats.censor_below[fmt], np.where(above, formats.censor_above[fmt], shown))

    # Texts that replace the number, by precedence (later wins); -1 keeps the number.
    texts = ResultTexts(site, formats)
    override = np.full(len(fmt), -1, np.int32)
    override = np.where(above, texts.censored_above + fmt, override)
    override = np.where(below, texts.censored_below + fmt, override)
    override = np.where(qualitative, texts.qualitative + np.maximum(rows["qual"], 0), override)
    unparseable = rows["damage"] == UNPARSEABLE_VALUE
    override = np.where(unparseable, texts.unparseable + rows["damage_text"], override)
    override = np.where(rows["blank_value"], texts.blank, override)
    number = fixed_decimals(reported, decimals)
    value = pc.if_else(pa.array(override >= 0), lookup(texts.table, np.maximum(override, 0)), number)

    # Flags: "" none, L, H, the site's normal flag, A (abnormal qualitative).
    flag_index = np.where(shown < formats.ref_low[fmt], 1, np.where(shown > formats.ref_high[fmt], 2, 3))
    flag_index = np.where(qualitative, np.where(rows["qual"] == POSITIVE, 4, 3), flag_index)
    flag_index = np.where(unparseable | rows["blank_value"], 0, flag_index)
    flag = lookup(("", "L", "H", site.normal_flag, "A"), flag_index)
    return value, flag


def write_lab_file(path: Path, site_index: int, rows: dict[str, np.ndarray], formats: FormatTable) -> int:
    site = SITES[site_index]
    index = np.nonzero(rows["site"] == site_index)[0]
    # An LIS extract lists results in the order they were released.
    status_order = np.array([1, 2, 0, 3])[rows["status"][index]]
    index = index[np.lexsort((status_order, rows["analyte"][index], rows["accession_serial"][index],
                              rows["resulted"][index]))]
    with ExportFile(path, compress=site.gzip, bom=site.bom) as sink:
        sink.write(header_line(LAB_COLUMNS))
        for begin in range(0, len(index), CHUNK_ROWS):
            chunk = take_columns(rows, index[begin:begin + CHUNK_ROWS])
            columns, short_rows = lab_columns(chunk, site_index, formats)
            write_lines(sink, columns, short_rows)
    return len(index)


# --------------------------------------------------------------------------------------------------------------
# Registry files
# --------------------------------------------------------------------------------------------------------------
def write_table(path: Path, header: tuple[str, ...], rows: dict[str, np.ndarray], make_columns) -> int:
    n = row_count(rows)
    with ExportFile(path) as sink:
        sink.write(header_line(header))
        for begin in range(0, n, CHUNK_ROWS):
            chunk = take_columns(rows, np.arange(begin, min(n, begin + CHUNK_ROWS)))
            write_lines(sink, make_columns(chunk))
    return n


def death_days(seed: int, cohort: dict, last_record_day: np.ndarray, window: Window) -> np.ndarray:
    """A death day for SHARE_DIED of the registry's patients whose last record (lab, diagnosis or medication
    start) is at least 30 days before the window's end: some day after that record, never after the window;
    NEVER for everybody else. From a stream of its own, so deaths change no other file of a seed."""
    rng = np.random.default_rng([seed, DEATH_STREAM])
    n = len(cohort["in_registry"])
    death = np.full(n, NEVER, dtype=np.int64)
    eligible = np.nonzero(cohort["in_registry"] & (last_record_day <= window.end - 30))[0]
    died = eligible[rng.random(len(eligible)) < SHARE_DIED]
    death[died] = uniform_int(rng, last_record_day[died] + 1, window.end, len(died))
    return death


def last_record_days(n: int, window: Window, *tables: dict[str, np.ndarray]) -> np.ndarray:
    """Each patient's last day with a record in `tables` (rows with "patient" and "day") up to the window's end;
    the window's start for a patient without one."""
    last = np.full(n, window.start, dtype=np.int64)
    for rows in tables:
        inside = rows["day"] <= window.end
        np.maximum.at(last, rows["patient"][inside], rows["day"][inside])
    return last


def patient_registry(cohort: dict, death: np.ndarray) -> dict[str, np.ndarray]:
    patient = np.nonzero(cohort["in_registry"])[0]
    return {"patient": patient, "birth": cohort["birth"][patient], "sex": cohort["sex"][patient],
            "practice": cohort["practice"][patient], "death": death[patient]}


def patient_columns(rows: dict[str, np.ndarray]) -> list[pa.Array]:
    died = rows["death"] < NEVER
    deaths = pc.if_else(pa.array(died), iso_dates(np.where(died, rows["death"], rows["birth"])), pa.scalar(""))
    return [patient_ids(rows["patient"]), iso_dates(rows["birth"]), lookup(("M", "F"), rows["sex"]),
            lookup(PRACTICES, rows["practice"]), deaths]


def value_set_table(code_sets: tuple) -> tuple[list[tuple[str, ...]], dict[tuple, np.ndarray]]:
    """All entries of several value sets in one table (for `lookup`), and each set's indices into it."""
    table, index = [], {}
    for code_set in code_sets:
        index[code_set] = np.arange(len(table), len(table) + len(code_set))
        table.extend(entry[:-1] for entry in code_set)  # the last field is the weight
    return table, index


DIAGNOSIS_TABLE, DIAGNOSIS_INDEX = value_set_table(
    (PA_DIAGNOSIS_CODES, OTHER_B12_DIAGNOSIS_CODES, UNRELATED_DIAGNOSIS_CODES, NEURO_DIAGNOSIS_CODES))
PRODUCT_TABLE, PRODUCT_INDEX = value_set_table(
    (HYDROXOCOBALAMIN_PRODUCTS, CYANOCOBALAMIN_PRODUCTS, METHYLCOBALAMIN_PRODUCTS, FOLIC_ACID_PRODUCTS,
     UNRELATED_PRODUCTS))


def coded_rows(rng, patient: np.ndarray, day: np.ndarray, codes: tuple, index: dict) -> dict[str, np.ndarray]:
    """Rows for a value set, each with a variant drawn by weight; `code` indexes the set's table."""
    choice = weighted_choice(rng, [c[-1] for c in codes], len(patient))
    return {"patient": np.asarray(patient, np.int64), "day": np.asarray(day, np.int64),
            "code": index[codes][choice]}


def make_diagnoses(rng: np.random.Generator, cohort: dict, window: Window) -> dict[str, np.ndarray]:
    n = len(cohort["group"])
    coded = np.nonzero(cohort["pa_diagnosis_coded"])[0]
    pa_day = np.where(cohort["prevalent_pa"][coded], cohort["index_day"][coded],
                      cohort["index_day"][coded] + uniform_int(rng, 7, 60, len(coded)))
    second = coded[rng.random(len(coded)) < 0.10]  # also coded in a second system (e.g. SNOMED in primary care)
    second_day = cohort["index_day"][second] + uniform_int(rng, 7, 400, len(second))
    other = np.nonzero((cohort["group"] == OTHER_DEFICIENCY) & (rng.random(n) < 0.4))[0]
    other_day = cohort["index_day"][other] + uniform_int(rng, 7, 60, len(other))
    counts = rng.poisson(0.9, n)
    unrelated, _ = ranges_to_index(counts)
    unrelated_day = uniform_int(rng, window.start - 10 * 365, window.end, len(unrelated))
    deficient = np.isin(cohort["group"], (PA, OTHER_DEFICIENCY))
    neuro = np.nonzero(rng.random(n) < np.where(deficient, SHARE_NEURO_FEATURES["deficient"],
                                                 SHARE_NEURO_FEATURES["general"]))[0]
    neuro_day = np.where(deficient[neuro], cohort["index_day"][neuro] + uniform_int(rng, -300, 60, len(neuro)),
                         uniform_int(rng, window.start - 3 * 365, window.end, len(neuro)))
    parts = [coded_rows(rng, coded, pa_day, PA_DIAGNOSIS_CODES, DIAGNOSIS_INDEX),
             coded_rows(rng, second, second_day, PA_DIAGNOSIS_CODES, DIAGNOSIS_INDEX),
             coded_rows(rng, other, other_day, OTHER_B12_DIAGNOSIS_CODES, DIAGNOSIS_INDEX),
             coded_rows(rng, unrelated, unrelated_day, UNRELATED_DIAGNOSIS_CODES, DIAGNOSIS_INDEX),
             coded_rows(rng, neuro, neuro_day, NEURO_DIAGNOSIS_CODES, DIAGNOSIS_INDEX)]
    return registry_order(concat_columns(parts), window)


def make_medications(rng: np.random.Generator, cohort: dict, window: Window) -> dict[str, np.ndarray]:
    n = len(cohort["group"])
    route = cohort["b12_route"]
    parts = []
    for route_code, products in ((B12_IM, HYDROXOCOBALAMIN_PRODUCTS), (B12_ORAL, CYANOCOBALAMIN_PRODUCTS),
                                 (B12_METHYL_ORAL, METHYLCOBALAMIN_PRODUCTS)):
        patient = np.nonzero(route == route_code)[0]
        parts.append(medication_rows(rng, patient, cohort["b12_start"][patient], cohort["b12_end"][patient], products))
    folic = np.nonzero(cohort["folic_start"] < NEVER)[0]
    parts.append(medication_rows(rng, folic, cohort["folic_start"][folic], cohort["folic_end"][folic],
                                 FOLIC_ACID_PRODUCTS))
    other, _ = ranges_to_index(rng.poisson(0.8, n))
    start = uniform_int(rng, window.start - 8 * 365, window.end, len(other))
    end = np.where(rng.random(len(other)) < 0.3, start + uniform_int(rng, 30, 1000, len(other)), NEVER)
    parts.append(medication_rows(rng, other, start, end, UNRELATED_PRODUCTS))
    return registry_order(concat_columns(parts), window)


def medication_rows(rng, patient, start, end, products) -> dict[str, np.ndarray]:
    rows = coded_rows(rng, patient, start, products, PRODUCT_INDEX)
    rows["end"] = np.asarray(end, np.int64)
    return rows


def registry_order(rows: dict[str, np.ndarray], window: Window) -> dict[str, np.ndarray]:
    """Only what was recorded by the export date, ordered by patient and date as registry extracts are."""
    keep = np.nonzero(rows["day"] <= window.end)[0]
    rows = take_columns(rows, keep)
    return take_columns(rows, np.lexsort((rows["code"], rows["day"], rows["patient"])))


def diagnosis_columns(rows: dict[str, np.ndarray]) -> list[pa.Array]:
    return [patient_ids(rows["patient"]), lookup([c[0] for c in DIAGNOSIS_TABLE], rows["code"]),
            lookup([c[1] for c in DIAGNOSIS_TABLE], rows["code"]), iso_dates(rows["day"])]


def medication_columns(rows: dict[str, np.ndarray]) -> list[pa.Array]:
    ended = rows["end"] < NEVER
    end_dates = pc.if_else(pa.array(ended), iso_dates(np.where(ended, rows["end"], rows["day"])), pa.scalar(""))
    return [patient_ids(rows["patient"])] + [lookup([c[i] for c in PRODUCT_TABLE], rows["code"]) for i in range(4)] + \
        [iso_dates(rows["day"]), end_dates]


# --------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------
def as_date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def routine_b12_not_added(rng: np.random.Generator, cohort: dict, rows: dict[str, np.ndarray],
                          routine_count: int) -> np.ndarray:
    """Rows (every report of them) of the routine B12 tests a practice did not add (PRACTICE_ROUTINE_B12_TESTING),
    decided once per encounter with a generator of its own, so that no other draw changes."""
    practice_share = PRACTICE_ROUTINE_B12_TESTING[cohort["practice"][rows["patient"]]]
    draws = rng.random(routine_count)
    routine = rows["encounter"] < routine_count
    # a window too short for any routine encounter (a few patients over one month) draws nothing to index
    drawn = np.zeros(len(routine)) if routine_count == 0 else draws[np.where(routine, rows["encounter"], 0)]
    return (routine & (rows["analyte"] == B12) & (cohort["group"][rows["patient"]] == GENERAL)
            & (drawn >= practice_share))


def make_results(rng: np.random.Generator, cohort: dict, window: Window, formats: FormatTable) -> dict:
    routine = routine_encounters(rng, cohort, window)
    encounters = concat_columns([routine,
                                    *diagnostic_encounters(rng, cohort, window),
                                    follow_up_encounters(rng, cohort, window)])
    rows = expand_encounters(rng, encounters, first_id=0)
    measure(rng, cohort, rows)
    reflex = expand_encounters(rng, reflex_encounters(rng, cohort, rows, window), first_id=len(encounters["patient"]))
    measure(rng, cohort, reflex)
    rows = concat_columns([rows, reflex])
    add_result_times(rng, rows)
    choose_report_formats(rng, rows, cohort, formats)
    assign_accessions(rows)
    rows = add_report_artefacts(rng, rows)
    not_added = routine_b12_not_added(rng.spawn(1)[0], cohort, rows, len(routine["patient"]))
    rows = take_columns(rows, np.nonzero(~not_added)[0])
    del rows["encounter"]
    return rows


def synthesize(patients: int, out: Path, seed: int = 42, start: date = date(2021, 1, 1),
               end: date = date(2025, 12, 31)) -> dict:
    """Write a synthetic export set (labs per site, patients, diagnoses, medications) into `out`.

    Returns {"out", "seed", "patients", "files": [file names], "rows": {file name: data rows}}; no patient data.
    Same arguments, same bytes.
    """
    start, end = as_date(start), as_date(end)
    if patients < 1:
        raise ValueError("patients must be at least 1")
    if end <= start:
        raise ValueError("end must be after start")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    window = Window(day_number(start), day_number(end))
    formats = build_format_table()

    cohort = make_cohort(rng, patients, window)
    rows = make_results(rng, cohort, window, formats)
    diagnoses = make_diagnoses(rng, cohort, window)
    medications = make_medications(rng, cohort, window)

    lab_days = {"patient": rows["patient"], "day": rows["collected"] // SECONDS_PER_DAY}
    death = death_days(seed, cohort, last_record_days(len(cohort["in_registry"]), window, lab_days, diagnoses,
                                                      medications), window)
    row_counts = {}
    for site_index, site in enumerate(SITES):
        row_counts[site.file_name] = write_lab_file(out / site.file_name, site_index, rows, formats)
    del rows
    row_counts["patients.csv"] = write_table(out / "patients.csv", PATIENT_COLUMNS, patient_registry(cohort, death),
                                             patient_columns)
    row_counts["diagnoses.csv"] = write_table(out / "diagnoses.csv", DIAGNOSIS_COLUMNS, diagnoses,
                                              diagnosis_columns)
    row_counts["medications.csv"] = write_table(out / "medications.csv", MEDICATION_COLUMNS, medications,
                                                medication_columns)
    for name, count in row_counts.items():
        log.info("synth wrote %s: %d rows", name, count)
    return {"out": str(out), "seed": seed, "patients": patients, "files": list(row_counts), "rows": row_counts}
