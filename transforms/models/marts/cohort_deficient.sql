-- grain: one patient whose status as of the as-of date is deficient.
-- rule (docs/models.md, Deficient): every patient with status deficient, with the rule_id and the
-- index result as reported (value, unit, date; for MMA_ON_SUPPLEMENT the index is the elevated MMA), and
-- treatment: "treated" when a B12 medication record is active on the index date (started on or before it,
-- no end date or ending after it) or starts on it or up to deficient_treated_within_days after it
-- (records starting after as-of are not yet known), else "untreated" (int_deficient_treatment, on the run's
-- as_of): the seed says these levels "mandate urgent intervention", so the untreated are the ones to act on.
-- neuro_involvement (clinical rules release 2): the patient has a diagnosis in the value set
-- neurological_features recorded on or before as-of (or without a date). ICD-10 and ICD-9 codes of the value
-- set match themselves and every code below them once dots are removed (G62 matches G62.9 and G629); other
-- code systems (a site's SNOMED CT codes) match exactly. neuro_detail lists each matching diagnosis as
-- recorded, with its date, earliest first. When neuro_involvement_enabled is off, neuro_involvement is false
-- and neuro_detail null. Worklists list these patients first ("seek urgent specialist advice").
-- situation and next_action (seed deficient_actions): neurological_involvement, else untreated or treated; the
-- situation's next_action_when_treated followed by the treatment start when the patient is treated and the seed
-- gives one (neurological involvement: "...; B12 started YYYY-MM-DD"), else its next_action. A patient deceased on
-- or before as-of is in no cohort.
with

settings as (
    select
        stg_run_as_of.as_of,
        rules_settings.neuro_involvement_enabled
    from {{ source('rules', 'rules_settings') }} as rules_settings
    cross join {{ ref('stg_run_as_of') }} as stg_run_as_of
),

deficient_patients as (
    select patient_status.*
    from {{ ref('patient_status') }} as patient_status
    where patient_status.status = 'deficient'
      and patient_status.deceased is not true
),

treatment_as_of as (
    select int_deficient_treatment.patient_id, int_deficient_treatment.treatment
    from {{ ref('int_deficient_treatment') }} as int_deficient_treatment
    cross join settings
    where int_deficient_treatment.as_of = settings.as_of
),

neuro_codes as (
    select
        stg_rules_codes.code_system,
        stg_rules_codes.code_normalised
    from {{ ref('stg_rules_codes') }} as stg_rules_codes
    where stg_rules_codes.value_set = 'neurological_features'
),

neuro_diagnoses as (
    select distinct
        stg_diagnoses.patient_id,
        stg_diagnoses.code_system,
        stg_diagnoses.code,
        stg_diagnoses.recorded_at
    from deficient_patients
    inner join {{ ref('stg_diagnoses') }} as stg_diagnoses
        on stg_diagnoses.patient_id = deficient_patients.patient_id
    inner join neuro_codes
        on neuro_codes.code_system = stg_diagnoses.code_system
       and (
           stg_diagnoses.code_normalised = neuro_codes.code_normalised
           or (
               stg_diagnoses.code_system in ('ICD-10', 'ICD-9')
               and starts_with(stg_diagnoses.code_normalised, neuro_codes.code_normalised)
           )
       )
    cross join settings
    where settings.neuro_involvement_enabled
      and (stg_diagnoses.recorded_at <= settings.as_of or stg_diagnoses.recorded_at is null)
),

neuro_patients as (
    select
        neuro_diagnoses.patient_id,
        string_agg(
            neuro_diagnoses.code || ' (' || neuro_diagnoses.code_system || ') '
                || coalesce('on ' || {{ iso_date('neuro_diagnoses.recorded_at') }}, 'without a date'),
            '; '
            order by neuro_diagnoses.recorded_at nulls last, neuro_diagnoses.code
        ) as neuro_detail
    from neuro_diagnoses
    group by neuro_diagnoses.patient_id
),

situations as (
    select
        deficient_patients.patient_id,
        neuro_patients.patient_id is not null as neuro_involvement,
        neuro_patients.neuro_detail,
        case
            when neuro_patients.patient_id is not null then 'neurological_involvement'
            when treatment_as_of.treatment = 'untreated' then 'untreated'
            else 'treated'
        end as situation
    from deficient_patients
    inner join treatment_as_of
        on treatment_as_of.patient_id = deficient_patients.patient_id
    left join neuro_patients
        on neuro_patients.patient_id = deficient_patients.patient_id
),

final as (
    select
        deficient_patients.patient_id,
        deficient_patients.rule_id,
        deficient_patients.index_value,
        deficient_patients.index_unit,
        deficient_patients.index_date,
        treatment_as_of.treatment,
        deficient_patients.index_analyte,
        deficient_patients.index_comparator,
        deficient_patients.index_value_si,
        deficient_patients.index_unit_si,
        deficient_patients.mma_value,
        deficient_patients.mma_unit,
        deficient_patients.mma_date,
        deficient_patients.has_pa,
        deficient_patients.on_b12,
        deficient_patients.treatment_start,
        deficient_patients.practice,
        situations.neuro_involvement,
        situations.neuro_detail,
        situations.situation,
        case
            when treatment_as_of.treatment = 'treated' and nullif(deficient_actions.next_action_when_treated, '') is not null
                then deficient_actions.next_action_when_treated
                    || coalesce(' ' || {{ iso_date('deficient_patients.treatment_start') }}, '')
            else deficient_actions.next_action
        end as next_action
    from deficient_patients
    inner join treatment_as_of
        on treatment_as_of.patient_id = deficient_patients.patient_id
    inner join situations
        on situations.patient_id = deficient_patients.patient_id
    inner join {{ ref('deficient_actions') }} as deficient_actions
        on deficient_actions.situation = situations.situation
    order by deficient_patients.patient_id
)

select * from final
