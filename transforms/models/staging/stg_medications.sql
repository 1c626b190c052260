-- grain: one medication record from the registry, with its drug class.
-- rule (docs/models.md, PA and treatment): a B12 drug is an ATC code under a `b12_drug` ATC code (B03BA*) or a drug
-- name containing one of the `b12_drug` names (hydroxocobalamin, cyanocobalamin, methylcobalamin), any route;
-- folic acid is an ATC code under a `folic_acid` ATC code (B03BB01) or a name containing "folic acid".
-- ATC codes are compared normalised (upper case, no dots or spaces) and by prefix, drug names case-blind
-- as substrings. A combination product can be both. Metformin (clinical rules release 2) is matched the same
-- way from the `metformin` code list (A10BA02, "metformin"). is_intramuscular: the route, trimmed and in any
-- case, is one of the `intramuscular_route` values as a whole (IM, intramuscular, SNOMED CT 78421000);
-- "IM injection" or "IM/SC" are not, unless a site adds them. A FHIR coded route matches when any of its
-- terms does (route_terms: its text, each coding's display and each coding's code), so SNOMED CT 78421000
-- sent with the display "Intramuscular route" is intramuscular by its code. is_oral: the same against the
-- `oral_route` value set (PO, oral, by mouth, SNOMED CT 26643006).
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

medication_records as (
    select
        medications.patient_id,
        medications.drug,
        medications.atc_code,
        upper(replace(replace(medications.atc_code, '.', ''), ' ', '')) as atc_normalised,
        upper(medications.drug) as drug_normalised,
        upper(trim(medications.route)) as route_normalised,
        -- every term the route can be matched on: the route itself, and a FHIR coded route's every term
        list_transform(
            list_concat([medications.route], coalesce(medications.route_terms, [])),
            lambda term: upper(trim(term))
        ) as route_terms_normalised,
        medications.route,
        medications.dose,
        medications.start_date,
        medications.end_date
    from {{ rebuilt_patients_only(source('lake', 'medications')) }} as medications
),

atc_codes as (
    select
        stg_rules_codes.value_set,
        stg_rules_codes.code_normalised
    from {{ ref('stg_rules_codes') }} as stg_rules_codes
    where stg_rules_codes.code_system = 'ATC'
),

route_codes as (
    select stg_rules_codes.value_set, stg_rules_codes.code_normalised
    from {{ ref('stg_rules_codes') }} as stg_rules_codes
    where stg_rules_codes.value_set in ('intramuscular_route', 'oral_route')
      and stg_rules_codes.code_system = 'route'
),

drug_names as (
    select
        stg_rules_codes.value_set,
        stg_rules_codes.code_normalised
    from {{ ref('stg_rules_codes') }} as stg_rules_codes
    where stg_rules_codes.code_system = 'drug_name'
),

-- A record's classes depend on its ATC code and drug name, and its routes on its route terms, alone: each is
-- looked up once per distinct value (a few hundred, against millions of records) and joined back.
drugs as (
    select distinct medication_records.atc_normalised, medication_records.drug_normalised
    from medication_records
),

drug_classes as (
    select
        drugs.atc_normalised,
        drugs.drug_normalised,
        (
            exists (
                select 1 from atc_codes
                where atc_codes.value_set = 'b12_drug'
                  and starts_with(drugs.atc_normalised, atc_codes.code_normalised)
            )
            or exists (
                select 1 from drug_names
                where drug_names.value_set = 'b12_drug'
                  and contains(drugs.drug_normalised, drug_names.code_normalised)
            )
        ) as is_b12_drug,
        (
            exists (
                select 1 from atc_codes
                where atc_codes.value_set = 'folic_acid'
                  and starts_with(drugs.atc_normalised, atc_codes.code_normalised)
            )
            or exists (
                select 1 from drug_names
                where drug_names.value_set = 'folic_acid'
                  and contains(drugs.drug_normalised, drug_names.code_normalised)
            )
        ) as is_folic_acid,
        (
            exists (
                select 1 from atc_codes
                where atc_codes.value_set = 'metformin'
                  and starts_with(drugs.atc_normalised, atc_codes.code_normalised)
            )
            or exists (
                select 1 from drug_names
                where drug_names.value_set = 'metformin'
                  and contains(drugs.drug_normalised, drug_names.code_normalised)
            )
        ) as is_metformin
    from drugs
),

routes as (
    select distinct medication_records.route_terms_normalised
    from medication_records
),

route_classes as (
    select
        routes.route_terms_normalised,
        exists (
            select 1 from route_codes
            where route_codes.value_set = 'intramuscular_route'
              and list_contains(routes.route_terms_normalised, route_codes.code_normalised)
        ) as is_intramuscular,
        exists (
            select 1 from route_codes
            where route_codes.value_set = 'oral_route'
              and list_contains(routes.route_terms_normalised, route_codes.code_normalised)
        ) as is_oral
    from routes
),

final as (
    select
        medication_records.patient_id,
        medication_records.drug,
        medication_records.atc_code,
        medication_records.route,
        medication_records.dose,
        medication_records.start_date,
        medication_records.end_date,
        drug_classes.is_b12_drug,
        drug_classes.is_folic_acid,
        drug_classes.is_metformin,
        route_classes.is_intramuscular,
        route_classes.is_oral
    from medication_records
    inner join drug_classes
        on drug_classes.atc_normalised is not distinct from medication_records.atc_normalised
       and drug_classes.drug_normalised is not distinct from medication_records.drug_normalised
    inner join route_classes
        on route_classes.route_terms_normalised is not distinct from medication_records.route_terms_normalised
)

select * from {{ built_in_buckets_or('final') }}
