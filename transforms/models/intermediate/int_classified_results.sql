-- grain: one counted lab result, with its result-level category (docs/models.md, Result categories) and the as-of
-- dates it counts on (counted_from to counted_through, see stg_counted_results).
-- rule: categories are evaluated top to bottom, the first that matches wins:
--   b12          deficient below b12_deficient_below_*, borderline at or below b12_borderline_max_*, else normal.
--                The comparison is made in the unit the lab reported when the rules give that unit (pg/mL and
--                ng/L, the code list b12_mass_unit, use the *_pg_ml thresholds on value_reported); every other
--                unit uses the *_pmol_l thresholds on value_si. 203 pg/mL is therefore not deficient.
--   holotc       deficient below holotc_deficient_below, indeterminate at or below holotc_indeterminate_max,
--                else normal.
--   mma          elevated above the lab's own upper reference limit when the result carries one and
--                mma_use_lab_upper_limit is on, else above mma_elevated_above; otherwise normal.
--   homocysteine elevated above the upper limit (same choice of limit), above_target at or above
--                homocysteine_above_target_from, else normal (the two flags are nested: elevated implies above
--                target, and the category names the more severe one).
--   mcv          macrocytic above mcv_macrocytosis_above, else normal (used by MACROCYTOSIS_NOT_TESTED).
--   if_antibody  positive, negative or equivocal, as reported.
--   folate and hemoglobin are counted but not classified by these rules (category null).
-- Censored results ("<100", ">1476") keep their comparator and get the most severe category that any
-- value consistent with them could have: "<x" and "<=x" reach down to zero, so a low-is-bad analyte is at
-- its worst, "<200 pmol/L" is deficient; ">x" and ">=x" reach up without limit, so ">1476" B12 is normal
-- and ">x" MMA is elevated. At a bound, "<=x"/">=x" include x and "<x"/">x" do not.
-- at_target (a flag, not a category): b12 strictly above b12_target_above_* (in the compared unit), only
-- when every value consistent with the report is above it; homocysteine below the above-target bound.
-- rule_id: the analyte and category in upper case: B12_DEFICIENT, B12_BORDERLINE, B12_NORMAL,
-- HOLOTC_DEFICIENT, HOLOTC_INDETERMINATE, HOLOTC_NORMAL, MMA_ELEVATED, MMA_NORMAL, HOMOCYSTEINE_ELEVATED,
-- HOMOCYSTEINE_ABOVE_TARGET, HOMOCYSTEINE_NORMAL, MCV_MACROCYTIC, MCV_NORMAL, IF_ANTIBODY_POSITIVE,
-- IF_ANTIBODY_NEGATIVE, IF_ANTIBODY_EQUIVOCAL.
-- severity orders categories of one analyte for ties (3 most severe): deficient/elevated/macrocytic/positive,
-- then borderline/indeterminate/above_target/equivocal, then normal/negative.
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

settings as (
    select rules_settings.*
    from {{ source('rules', 'rules_settings') }} as rules_settings
),

b12_mass_units as (
    select stg_rules_codes.code_normalised as unit_normalised
    from {{ ref('stg_rules_codes') }} as stg_rules_codes
    where stg_rules_codes.value_set = 'b12_mass_unit'
),

counted_results as (
    select
        stg_counted_results.*,
        stg_counted_results.analyte = 'b12'
            and upper(replace(stg_counted_results.unit_reported, ' ', '')) in (
                select b12_mass_units.unit_normalised from b12_mass_units
            ) as compared_in_mass_unit
    from {{ rebuilt_patients_only(ref('stg_counted_results')) }} as stg_counted_results
),

bounds as (
    -- the value compared and the bounds that apply to it, all in the same unit
    select
        counted_results.*,
        case
            when counted_results.compared_in_mass_unit then counted_results.value_reported
            else counted_results.value_si
        end as compared_value,
        case
            when counted_results.compared_in_mass_unit then counted_results.unit_reported
            else counted_results.unit_si
        end as compared_unit,
        -- low values are bad (b12, holotc): "deficient" below this
        case
            when counted_results.analyte = 'b12' and counted_results.compared_in_mass_unit
                then settings.b12_deficient_below_pg_ml
            when counted_results.analyte = 'b12' then settings.b12_deficient_below_pmol_l
            when counted_results.analyte = 'holotc' then settings.holotc_deficient_below_pmol_l
        end as deficient_below,
        -- ... and "borderline" / "indeterminate" at or below this
        case
            when counted_results.analyte = 'b12' and counted_results.compared_in_mass_unit
                then settings.b12_borderline_max_pg_ml
            when counted_results.analyte = 'b12' then settings.b12_borderline_max_pmol_l
            when counted_results.analyte = 'holotc' then settings.holotc_indeterminate_max_pmol_l
        end as borderline_max,
        case
            when counted_results.analyte = 'b12' and counted_results.compared_in_mass_unit
                then settings.b12_target_above_pg_ml
            when counted_results.analyte = 'b12' then settings.b12_target_above_pmol_l
        end as target_above,
        -- high values are bad (mma, homocysteine, mcv): "elevated" / "macrocytic" above this
        case
            when counted_results.analyte = 'mma' and settings.mma_use_lab_upper_limit
                then coalesce(counted_results.ref_high_si, settings.mma_elevated_above_umol_l)
            when counted_results.analyte = 'mma' then settings.mma_elevated_above_umol_l
            when counted_results.analyte = 'homocysteine' and settings.homocysteine_use_lab_upper_limit
                then coalesce(counted_results.ref_high_si, settings.homocysteine_elevated_above_umol_l)
            when counted_results.analyte = 'homocysteine' then settings.homocysteine_elevated_above_umol_l
            when counted_results.analyte = 'mcv' then settings.mcv_macrocytosis_above_fl
        end as elevated_above,
        -- ... and "above_target" at or above this (homocysteine only)
        case
            when counted_results.analyte = 'homocysteine' then settings.homocysteine_above_target_from_umol_l
        end as above_target_from
    from counted_results
    cross join settings
),

categorised as (
    select
        bounds.*,
        bounds.comparator is not null as censored,
        case
            when bounds.analyte in ('b12', 'holotc') then
                case
                    when bounds.compared_value is null then null
                    -- "<x", "<=x": values down to zero are consistent with the report
                    when bounds.comparator in ('<', '<=') or bounds.compared_value < bounds.deficient_below
                        then 'deficient'
                    -- ">x" excludes x itself; an exact value or ">=x" includes it
                    when bounds.compared_value < bounds.borderline_max
                      or (bounds.compared_value = bounds.borderline_max and bounds.comparator is distinct from '>')
                        then case when bounds.analyte = 'b12' then 'borderline' else 'indeterminate' end
                    else 'normal'
                end
            when bounds.analyte in ('mma', 'homocysteine', 'mcv') then
                case
                    when bounds.compared_value is null then null
                    -- ">x", ">=x": values without upper limit are consistent with the report
                    when bounds.comparator in ('>', '>=') or bounds.compared_value > bounds.elevated_above
                        then case when bounds.analyte = 'mcv' then 'macrocytic' else 'elevated' end
                    -- "<x" excludes x itself; an exact value or "<=x" includes it
                    when bounds.analyte = 'homocysteine'
                     and (bounds.compared_value > bounds.above_target_from
                          or (bounds.compared_value = bounds.above_target_from
                              and bounds.comparator is distinct from '<'))
                        then 'above_target'
                    else 'normal'
                end
            when bounds.analyte = 'if_antibody' then bounds.value_text
        end as category,
        case
            when bounds.analyte = 'b12' then
                -- at target only when every value consistent with the report is above the target
                case
                    when bounds.compared_value is null then null
                    when bounds.comparator is null then bounds.compared_value > bounds.target_above
                    when bounds.comparator = '>' then bounds.compared_value >= bounds.target_above
                    when bounds.comparator = '>=' then bounds.compared_value > bounds.target_above
                    else false
                end
            when bounds.analyte = 'homocysteine' then
                case
                    when bounds.compared_value is null then null
                    when bounds.comparator is null then bounds.compared_value < bounds.above_target_from
                    when bounds.comparator = '<' then bounds.compared_value <= bounds.above_target_from
                    when bounds.comparator = '<=' then bounds.compared_value < bounds.above_target_from
                    else false
                end
        end as at_target
    from bounds
),

final as (
    select
        categorised.patient_id,
        categorised.analyte,
        categorised.collected_at,
        categorised.collected_on,
        categorised.value_si,
        categorised.unit_si,
        categorised.comparator,
        categorised.value_raw,
        categorised.unit_raw,
        categorised.value_reported,
        categorised.unit_reported,
        categorised.value_text,
        categorised.censored,
        categorised.category,
        categorised.at_target,
        upper(categorised.analyte) || '_' || upper(categorised.category) as rule_id,
        case
            when categorised.category in ('deficient', 'elevated', 'macrocytic', 'positive') then 3
            when categorised.category in ('borderline', 'indeterminate', 'above_target', 'equivocal') then 2
            when categorised.category in ('normal', 'negative') then 1
        end as severity,
        categorised.compared_value,
        categorised.compared_unit,
        categorised.elevated_above as upper_limit_applied,
        categorised.target_above as target_applied,
        categorised.accession,
        categorised.status,
        categorised.resulted_at,
        categorised.performing_lab,
        categorised.source_file,
        categorised.source_row,
        categorised.counted_from,
        categorised.counted_through
    from categorised
)

select * from {{ built_in_buckets_or('final') }}
