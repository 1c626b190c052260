-- grain: one code of one code list of the rules file (value set, code system, code).
-- rule: codes are compared in one normalised spelling, the same the lake uses for diagnoses.code_normalised:
-- upper case with dots and spaces removed (D51.0 -> D510, B03BA -> B03BA). Drug names are the exception:
-- they are matched as substrings of free text, so only case is normalised and inner spaces are kept
-- ("folic acid" must not become "FOLICACID"); routes likewise keep their inner spaces (they are matched on
-- the whole value, trimmed, any case).
with

rules_code_list as (
    select
        rules_codes.value_set,
        rules_codes.code_system,
        rules_codes.code
    from {{ source('rules', 'rules_codes') }} as rules_codes
),

final as (
    select
        rules_code_list.value_set,
        rules_code_list.code_system,
        rules_code_list.code,
        case
            when rules_code_list.code_system in ('drug_name', 'route')
                then upper(trim(rules_code_list.code))
            else upper(replace(replace(rules_code_list.code, '.', ''), ' ', ''))
        end as code_normalised
    from rules_code_list
)

select * from final
