-- grain: one row, the run's as-of date D.
-- rule: the date reaches the project as the dbt variable as_of, which b12lab passes for the run
-- (--vars '{as_of: "2026-10-31"}'); without it (dbt run by hand) it is today's date, the date `b12lab run` takes
-- without --as-of. This is the one model that reads the variable: stg_as_of_dates and the marts take the run's
-- date from here.
with

run_date as (
    select cast('{{ var("as_of", modules.datetime.date.today().isoformat()) }}' as date) as as_of
),

final as (
    select run_date.as_of
    from run_date
)

select * from final
