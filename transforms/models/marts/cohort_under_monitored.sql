-- grain: one patient and under-monitoring reason, as of the as-of date (a patient may have several).
-- rule (docs/models.md, Under-monitored), computed in int_under_monitored for the run's as_of (see
-- there for every window); "monitoring result" means a counted b12, holotc or mma result, and each reason
-- runs only when its switch is on in the profile:
--   PA_NO_POST_TREATMENT_RECHECK  PA, a treatment start S with as-of on or after S + pa_recheck_window_end_days,
--                                 and no monitoring result from S + pa_recheck_window_start_days to as-of (a late
--                                 recheck closes it; "recheck B12 after 3-6 months of treatment")
--   PA_OVERDUE_ANNUAL_B12         PA, and no monitoring result from as-of - pa_annual_recheck_days to as-of
--                                 ("continue annual B12 screening lifelong")
--   BORDERLINE_NO_MMA             status borderline_needs_mma and the index result collected on or before
--                                 as-of - borderline_mma_grace_days
--   SUPPLEMENTED_NO_MMA           on B12 at as-of, a b12 result and no mma result from
--                                 as-of - supplemented_mma_lookback_days to as-of ("measure MMA as the primary test")
--   TREATED_BELOW_TARGET          PA, a treatment start S, and the latest b12 result collected on or after
--                                 S + below_target_after_treatment_days is not at target (> 300 pmol/L, > 400 pg/mL)
--   DEFICIENT_NO_IF_ANTIBODY      deficient for deficient_if_antibody_grace_days, no PA, no intrinsic factor
--                                 antibody result ever
--   DEFICIENT_NO_BLOOD_COUNT      deficient for deficient_blood_count_grace_days, no haemoglobin or MCV around the
--                                 index result
--   PA_NOT_ON_TREATMENT           PA known for pa_known_for_days, no B12 record current or ended within
--                                 pa_treatment_lapse_days
--   TREATED_MARKERS_NOT_NORMAL    PA, treated, the latest homocysteine or MMA after treatment shows it not working
-- detail says in words what was missing, with the dates of the window; it never names the patient.
-- open_since: the first day the reason applied (the day its window closed), as int_under_monitored gives it.
with

settings as (
    select stg_run_as_of.as_of
    from {{ ref('stg_run_as_of') }} as stg_run_as_of
),

reasons_as_of as (
    select int_under_monitored.*
    from {{ ref('int_under_monitored') }} as int_under_monitored
    inner join settings
        on int_under_monitored.as_of = settings.as_of
),

final as (
    select
        reasons_as_of.patient_id,
        reasons_as_of.reason,
        reasons_as_of.detail,
        reasons_as_of.practice,
        reasons_as_of.open_since
    from reasons_as_of
    order by reasons_as_of.patient_id, reasons_as_of.reason
)

select * from final
