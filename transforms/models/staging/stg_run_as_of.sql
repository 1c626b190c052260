-- grain: one row, the run's as-of date D.
-- rule: the date reaches the project as the dbt variable as_of (by hand: --vars '{as_of: "2026-10-31"}'); its
-- default is the environment variable B12LAB_RUN_AS_OF, which b12lab sets for the run (a changed environment
-- variable makes dbt re-parse this file alone, a changed --vars the whole project), and without either it is
-- today's date, the date `b12lab run` takes without --as-of. This is the one model that reads the variable: stg_as_of_dates and the marts take the run's
-- date from here.
with

run_date as (
    select cast('{{ var("as_of", env_var("B12LAB_RUN_AS_OF", modules.datetime.date.today().isoformat())) }}' as date) as as_of
),

final as (
    select run_date.as_of
    from run_date
)

select * from final
