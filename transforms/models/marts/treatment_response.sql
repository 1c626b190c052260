-- grain: one patient and follow-up window (1m, 3-6m, 12m) that has begun on the run's as-of date D.
-- rule (docs/models.md, Treatment response): int_treatment_response on the run's as_of - patients treated
-- (treatment start S on or before D) for a documented deficiency (a deficient, borderline or indeterminate
-- b12 or holotc result, or an elevated mma, from S - response_baseline_before_days to S), the route class of the
-- records that start S, and per window the first counted b12 result collected in it with not_deficient and
-- at_target. practice is the patient's practice trimmed, "(no practice)" when there is none (as in the worklists).
-- The dead (deceased on or before D) have no row. The column "window" is an SQL keyword: quote it
-- (select "window" from treatment_response).
with

run_as_of as (
    select stg_run_as_of.as_of
    from {{ ref('stg_run_as_of') }} as stg_run_as_of
),

final as (
    select
        int_treatment_response.patient_id,
        {{ practice_label("int_treatment_response.practice") }} as practice,
        int_treatment_response.treatment_start,
        int_treatment_response.route_class,
        int_treatment_response.has_pa,
        int_treatment_response.baseline_analyte,
        int_treatment_response.baseline_value_si,
        int_treatment_response.baseline_date,
        int_treatment_response.window,
        int_treatment_response.window_start,
        int_treatment_response.window_end,
        int_treatment_response.window_closed,
        int_treatment_response.result_date,
        int_treatment_response.result_value_si,
        int_treatment_response.result_value_raw,
        int_treatment_response.result_unit_raw,
        int_treatment_response.not_deficient,
        int_treatment_response.at_target,
        int_treatment_response.as_of
    from {{ ref('int_treatment_response') }} as int_treatment_response
    inner join run_as_of
        on run_as_of.as_of = int_treatment_response.as_of
    order by int_treatment_response.patient_id, int_treatment_response.window_order
)

select * from final
